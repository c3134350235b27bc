"""Recorded pipeline: perception (+ overlay) on images from a bag instead of a camera.

    fer-ros launch fer_ros bag.launch.py bag:=recording use_sim_time:=true
    # or play the bag yourself:  ros2 bag play recording --clock  (or fer-ros bag play)

Images are read from `image_topic` (relative names resolve inside `namespace`). The
perception node keeps only the newest image by default; to process every image of a bag
played faster than inference, give `queue_size:=100` (or play it at a lower `rate`).
With `bag` set, the bag is played here (`fer-ros bag play`, with /clock when use_sim_time
is true) and everything stops when it ends. Parameters come from config/<node>.yaml,
then the launch arguments, then `params_file` (applied last, so it wins). The nodes come
from perception.launch.py, included with this file's arguments.
"""

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    GroupAction,
    IncludeLaunchDescription,
    OpaqueFunction,
    Shutdown,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("image_topic", "/camera/image_raw", "sensor_msgs/Image topic to process"),
    ("camera_info_topic", "/camera/camera_info",
     "sensor_msgs/CameraInfo topic for head poses (none recorded: fov_deg is assumed)"),
    ("bag", "", "rosbag2 bag to play (fer-ros bag play); empty = play it yourself"),
    ("rate", "1.0", "playback speed of `bag`"),
    ("queue_size", "", "images kept waiting for inference (1 = only the newest; e.g. 100: "
     "every image of a bag played faster than inference while the backlog fits); empty = "
     "config/perception.yaml's (1)"),
    ("use_sim_time", "false", "use the bag's /clock as ROS time (true/false)"),
    ("image_transport", "raw", "raw (sensor_msgs/Image) or compressed (a bag of JPEG/PNG on "
     "<image_topic>/compressed)"),
    ("autostart", "true", "perception configures and activates itself (true/false); false: "
     "a lifecycle manager drives it"),
    ("gallery", "", "gallery file (JSON) of enrolled people; empty = config/perception.yaml's"),
    ("device", "", "inference device: auto, cpu or cuda[:N]; empty = config/perception.yaml's"),
    ("viewer", "false", "start overlay_node, the MJPEG viewer (true/false)"),
    ("viewer_port", "", "HTTP port of the viewer; empty = config/overlay.yaml's (8080)"),
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
    # only: the included file's other arguments are fixed here.
    this = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    actions = [
        include("perception.launch.py", image_topic=this["image_topic"],
                camera_info_topic=this["camera_info_topic"], streams="",
                gallery=this["gallery"], device=this["device"], half_precision="",
                queue_size=this["queue_size"], image_transport=this["image_transport"],
                autostart=this["autostart"], use_sim_time=this["use_sim_time"],
                viewer=this["viewer"], viewer_port=this["viewer_port"], video_path="",
                greeter="false", rviz=this["rviz"],
                namespace=this["namespace"], params_file=this["params_file"]),
    ]
    bag = LaunchConfiguration("bag").perform(context)
    if bag:
        cmd = ["fer-ros", "bag", "play", bag, "--rate", this["rate"]]
        # (perception.launch.py, included first, stops the launch unless it is true or false)
        if LaunchConfiguration("use_sim_time").perform(context).strip().lower() == "true":
            cmd.append("--clock")
        actions.append(ExecuteProcess(cmd=cmd, name="bag_play", output="screen",
                                      on_exit=Shutdown(reason="bag finished")))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)])
