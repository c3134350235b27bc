"""Live pipeline: camera -> perception (faces, names, emotions) -> overlay viewer (+ greeter).

    ros2 launch fer_ros webcam.launch.py source:=0 gallery:=~/gallery.json
    fer-ros launch fer_ros webcam.launch.py source:=clip.mp4 viewer:=false

Topics (relative to `namespace`, so with the default they are absolute): camera/image_raw,
camera/camera_info, faces/emotions, faces/overlay. Parameters come from config/<node>.yaml,
then the launch arguments below, then `params_file` (applied last, so it wins).
The camera node is required: when it ends (a file source that is not looped ends after
its last frame) or dies, everything stops. The nodes come from camera.launch.py and
perception.launch.py, included with this file's arguments.
"""

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    GroupAction,
    IncludeLaunchDescription,
    OpaqueFunction,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("source", "0", "camera index (0 = /dev/video0), device path, video file or image folder"),
    ("loop", "false", "replay a file or folder source forever (true/false)"),
    ("fps", "", "camera frame rate; empty = config/camera.yaml's (a file's own rate)"),
    ("gallery", "", "gallery file (JSON) of enrolled people; empty = config/perception.yaml's"),
    ("device", "", "inference device: auto, cpu or cuda[:N]; empty = config/perception.yaml's"),
    ("viewer", "true", "start overlay_node, the MJPEG viewer (true/false)"),
    ("viewer_port", "", "HTTP port of the viewer; empty = config/overlay.yaml's (8080)"),
    ("video_path", "", "also write the annotated video to this file; empty = "
     "config/overlay.yaml's (none)"),
    ("greeter", "false", "start greeter_node, an example behaviour (true/false)"),
    ("autostart", "true", "perception configures and activates itself (true/false); false: "
     "a lifecycle manager drives it"),
    ("use_sim_time", "", "use /clock as ROS time (true/false); empty = the nodes' default "
     "(false)"),
    ("rviz", "false", "start rviz2 with rviz/fer_ros.rviz where it is installed (true/false)"),
    ("namespace", "", "namespace of all nodes and topics"),
    ("params_file", "", "extra parameter file applied after config/*.yaml; empty = none"),
]


def include(launch_file, **arguments):
    """launch_file of this package, given every one of its arguments; in a scoped group, so
    the values set for it stay there."""
    path = PathJoinSubstitution([FindPackageShare("fer_ros"), "launch", launch_file])
    return GroupAction([IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                                 launch_arguments=arguments.items())])


def launch_setup(context):
    # Included from an OpaqueFunction, so that --show-args lists this file's arguments
    # only: the included files' other arguments are fixed here.
    this = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    topics = {"image_topic": "camera/image_raw", "camera_info_topic": "camera/camera_info"}
    return [
        include("camera.launch.py", source=this["source"], loop=this["loop"], fps=this["fps"],
                camera_name="", use_sim_time=this["use_sim_time"], namespace=this["namespace"],
                params_file=this["params_file"], **topics),
        include("perception.launch.py", streams="", gallery=this["gallery"],
                device=this["device"], half_precision="", queue_size="", image_transport="",
                autostart=this["autostart"], use_sim_time=this["use_sim_time"],
                viewer=this["viewer"], viewer_port=this["viewer_port"],
                video_path=this["video_path"], greeter=this["greeter"], rviz=this["rviz"],
                namespace=this["namespace"], params_file=this["params_file"], **topics),
    ]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)])
