"""Perception on a robot's own camera: faces, names, emotions (+ overlay viewer).

    ros2 launch fer_ros robot.launch.py image:=/head_front_camera/color/image_raw \
        image_transport:=compressed
    fer-ros launch fer_ros robot.launch.py image:=/cam/image_raw viewer:=false

For a camera driver that already runs: no camera node is started. `image` is the driver's
raw image topic; with `image_transport:=compressed` the nodes read its `/compressed`
sibling (JPEG or PNG, as the driver's compressed_image_transport publishes it).
`camera_info` defaults to the image topic's sibling, as image_transport's camera
subscriber finds it (/head_front_camera/color/camera_info for the topic above): its K
gives head poses their distance; without it, perception assumes `fov_deg` and says so.
Parameters come from config/<node>.yaml, then the launch arguments, then `params_file`
(applied last, so it wins). The nodes come from perception.launch.py, included with
this file's arguments.
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
    ("image", "/camera/image_raw", "the camera driver's sensor_msgs/Image topic (its base "
     "name with image_transport:=compressed)"),
    ("image_transport", "raw", "raw or compressed (JPEG/PNG from <image>/compressed)"),
    ("camera_info", "", "sensor_msgs/CameraInfo topic; empty = the image topic's sibling "
     "camera_info"),
    ("gallery", "", "gallery of enrolled people; empty = config/perception.yaml's"),
    ("device", "", "inference device: auto, cpu or cuda[:N]; empty = config/perception.yaml's"),
    ("viewer", "true", "start overlay_node, the MJPEG viewer (true/false)"),
    ("viewer_port", "", "HTTP port of the viewer; empty = config/overlay.yaml's (8080)"),
    ("autostart", "true", "perception configures and activates itself (true/false); false: "
     "a lifecycle manager drives it"),
    ("use_sim_time", "false", "use /clock as ROS time (true/false), e.g. with a bag played "
     "with --clock"),
    ("rviz", "false", "start rviz2 with rviz/fer_ros.rviz where it is installed (true/false)"),
    ("namespace", "", "namespace of all nodes (and of relative topics)"),
    ("params_file", "", "extra parameter file applied after config/*.yaml; empty = none"),
]


def sibling(topic: str, name: str) -> str:
    """``name`` beside ``topic``: /head/color/image_raw -> /head/color/camera_info."""
    parent, slash, _ = topic.rpartition("/")
    return f"{parent}{slash}{name}"


def include(launch_file, **arguments):
    """launch_file of this package, given every one of its arguments; in a scoped group, so
    the values set for it stay there."""
    path = PathJoinSubstitution([FindPackageShare("fer_ros"), "launch", launch_file])
    return GroupAction([IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                                 launch_arguments=arguments.items())])


def launch_setup(context):
    # Included from an OpaqueFunction, so that --show-args lists this file's arguments
    # only: the included file's other arguments are fixed here.
    this = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    image = LaunchConfiguration("image").perform(context).strip()
    if not image:
        raise ValueError("launch argument image must name the camera's image topic")
    info = LaunchConfiguration("camera_info").perform(context).strip() or sibling(
        image, "camera_info")
    return [
        include("perception.launch.py", image_topic=image, camera_info_topic=info,
                streams="", gallery=this["gallery"], device=this["device"],
                half_precision="", queue_size="", image_transport=this["image_transport"],
                autostart=this["autostart"], use_sim_time=this["use_sim_time"],
                viewer=this["viewer"], viewer_port=this["viewer_port"], video_path="",
                greeter="false", rviz=this["rviz"], namespace=this["namespace"],
                params_file=this["params_file"]),
    ]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)])
