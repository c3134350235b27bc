"""Perception on images from elsewhere: faces, names, emotions (+ overlay viewer, greeter).

    ros2 launch fer_ros perception.launch.py image_topic:=/robot/image_raw viewer:=true
    fer-ros launch fer_ros perception.launch.py streams:=front,back image_topic:=

The base that webcam.launch.py, bag.launch.py and multicam.launch.py include (with every
argument below given); on its own it serves images that another process publishes.
With `streams` empty the perception node reads one stream, `image_topic` and
`camera_info_topic` (relative names resolve inside `namespace`); with `streams` set it
reads N/image and N/camera_info for each name N. Parameters come from config/<node>.yaml,
then the launch arguments below, then `params_file` (applied last, so it wins).
"""

from ament_index_python.packages import get_package_prefix
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("image_topic", "camera/image_raw",
     "sensor_msgs/Image topic to process; empty = the node's own name, image"),
    ("camera_info_topic", "camera/camera_info",
     "sensor_msgs/CameraInfo topic for head poses; empty = the node's own name, camera_info"),
    ("streams", "", "comma-separated camera names (topic prefixes), all served by one "
     "perception node; empty = config/perception.yaml's (one stream)"),
    ("gallery", "", "gallery file (JSON) of enrolled people; empty = config/perception.yaml's"),
    ("device", "", "inference device: auto, cpu or cuda[:N]; empty = config/perception.yaml's"),
    ("half_precision", "", "float16 FaceNet and emotion on CUDA (true/false); empty = "
     "config/perception.yaml's"),
    ("queue_size", "", "images kept waiting per stream (1 = only the newest; more: a bag "
     "played faster than inference loses none); empty = config/perception.yaml's (1)"),
    ("image_transport", "", "raw (sensor_msgs/Image) or compressed (JPEG/PNG from "
     "<image_topic>/compressed), for perception and the viewer; empty = config/*.yaml's (raw)"),
    ("autostart", "", "perception configures and activates itself (true/false); false: a "
     "lifecycle manager drives it; empty = config/perception.yaml's (true)"),
    ("use_sim_time", "", "use /clock as ROS time (true/false); empty = the nodes' default"),
    ("viewer", "false", "start overlay_node, the MJPEG viewer of image_topic (true/false)"),
    ("viewer_port", "", "HTTP port of the viewer; empty = config/overlay.yaml's (8080)"),
    ("video_path", "", "also write the annotated video to this file; empty = "
     "config/overlay.yaml's (none)"),
    ("greeter", "false", "start greeter_node, an example behaviour (true/false)"),
    ("rviz", "false", "start rviz2 with rviz/fer_ros.rviz (the overlay, the markers, TF) "
     "where rviz2 is installed; where it is not, one line says so (true/false)"),
    ("namespace", "", "namespace of all nodes and topics"),
    ("params_file", "", "extra parameter file applied after config/*.yaml; empty = none"),
]


def flag(context, name):
    value = LaunchConfiguration(name).perform(context).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"launch argument {name} must be true or false, got {value!r}")
    return value == "true"


def given(context, name, key, cast=str):
    """{key: value} for a launch argument that was set, {} for an empty one, so that an
    argument left alone does not override the value in config/*.yaml. cast=bool: a flag."""
    value = LaunchConfiguration(name).perform(context)
    if not value:
        return {}
    return {key: flag(context, name) if cast is bool else cast(value)}


def config(name):
    return PathJoinSubstitution([FindPackageShare("fer_ros"), "config", name])


def launch_setup(context):
    override = LaunchConfiguration("params_file").perform(context)
    extra = [override] if override else []
    namespace = LaunchConfiguration("namespace")
    image_topic = LaunchConfiguration("image_topic").perform(context)
    info_topic = LaunchConfiguration("camera_info_topic").perform(context)
    streams = [name.strip() for name in LaunchConfiguration("streams").perform(context)
               .split(",") if name.strip()]
    sim_time = given(context, "use_sim_time", "use_sim_time", bool)
    transport = given(context, "image_transport", "image_transport")
    perception = {**({"streams": streams} if streams else {}),
                  **given(context, "gallery", "gallery_path"),
                  **given(context, "device", "device"),
                  **given(context, "half_precision", "half_precision", bool),
                  **given(context, "queue_size", "queue_size", int),
                  **given(context, "autostart", "autostart", bool),
                  **transport, **sim_time}
    nodes = [
        Node(package="fer_ros", executable="perception_node", name="perception",
             namespace=namespace,
             parameters=[config("perception.yaml"), perception, *extra],
             remappings=[(name, topic) for name, topic in
                         (("image", image_topic), ("camera_info", info_topic)) if topic],
             output="screen"),
    ]
    if flag(context, "viewer"):
        nodes.append(Node(
            package="fer_ros", executable="overlay_node", name="overlay", namespace=namespace,
            parameters=[config("overlay.yaml"),
                        {**given(context, "viewer_port", "port", int),
                         **given(context, "video_path", "video_path"), **transport,
                         **sim_time},
                        *extra],
            remappings=[("image", image_topic)] if image_topic else [], output="screen"))
    if flag(context, "greeter"):
        nodes.append(Node(
            package="fer_ros", executable="greeter_node", name="greeter", namespace=namespace,
            parameters=[config("greeter.yaml"), *([sim_time] if sim_time else []), *extra],
            output="screen"))
    if flag(context, "rviz"):
        nodes.append(rviz(sim_time))
    return nodes


def rviz(sim_time):
    """rviz2 with our config, or the line that says why not."""
    try:
        get_package_prefix("rviz2")
    except (LookupError, OSError):
        return LogInfo(msg="rviz:=true, but rviz2 is not installed here (on a ROS install: "
                           "apt install ros-$ROS_DISTRO-rviz2); going on without it")
    config_file = PathJoinSubstitution([FindPackageShare("fer_ros"), "rviz", "fer_ros.rviz"])
    return Node(package="rviz2", executable="rviz2", name="rviz2",
                arguments=["-d", config_file], parameters=[sim_time] if sim_time else [],
                output="screen")


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)])
