"""Recorded pipeline: perception (+ overlay) on images from a bag instead of a camera.

    fer-ros launch fer_ros bag.launch.py bag:=recording use_sim_time:=true
    # or play the bag yourself:  ros2 bag play recording --clock  (or fer-ros bag play)

Images are read from `image_topic` (relative names resolve inside `namespace`).
With `bag` set, the bag is played here (`fer-ros bag play`, with /clock when use_sim_time
is true) and everything stops when it ends. Parameters come from config/<node>.yaml,
then the launch arguments, then `params_file` (applied last, so it wins).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("image_topic", "/camera/image_raw", "sensor_msgs/Image topic to process"),
    ("camera_info_topic", "/camera/camera_info",
     "sensor_msgs/CameraInfo topic for head poses (none recorded: fov_deg is assumed)"),
    ("bag", "", "rosbag2 bag to play (fer-ros bag play); empty = play it yourself"),
    ("rate", "1.0", "playback speed of `bag`"),
    ("use_sim_time", "false", "use the bag's /clock as ROS time (true/false)"),
    ("gallery", "", "gallery file (JSON) of enrolled people; empty = config/perception.yaml's"),
    ("device", "", "inference device: auto, cpu or cuda[:N]; empty = config/perception.yaml's"),
    ("viewer", "false", "start overlay_node, the MJPEG viewer (true/false)"),
    ("viewer_port", "", "HTTP port of the viewer; empty = config/overlay.yaml's (8080)"),
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
    argument left alone does not override the value in config/*.yaml."""
    value = LaunchConfiguration(name).perform(context)
    return {key: cast(value)} if value else {}


def config(name):
    return PathJoinSubstitution([FindPackageShare("fer_ros"), "config", name])


def launch_setup(context):
    override = LaunchConfiguration("params_file").perform(context)
    extra = [override] if override else []
    namespace = LaunchConfiguration("namespace")
    image_topic = LaunchConfiguration("image_topic")
    sim_time = flag(context, "use_sim_time")
    actions = [
        Node(package="fer_ros", executable="perception_node", name="perception",
             namespace=namespace,
             parameters=[config("perception.yaml"),
                         {**given(context, "gallery", "gallery_path"),
                          **given(context, "device", "device"),
                          "use_sim_time": sim_time}, *extra],
             remappings=[("image", image_topic),
                         ("camera_info", LaunchConfiguration("camera_info_topic"))],
             output="screen"),
    ]
    if flag(context, "viewer"):
        actions.append(Node(
            package="fer_ros", executable="overlay_node", name="overlay", namespace=namespace,
            parameters=[config("overlay.yaml"),
                        {**given(context, "viewer_port", "port", int),
                         "use_sim_time": sim_time}, *extra],
            remappings=[("image", image_topic)], output="screen"))
    bag = LaunchConfiguration("bag").perform(context)
    if bag:
        cmd = ["fer-ros", "bag", "play", bag, "--rate", LaunchConfiguration("rate")]
        if sim_time:
            cmd.append("--clock")
        actions.append(ExecuteProcess(cmd=cmd, name="bag_play", output="screen",
                                      on_exit=Shutdown(reason="bag finished")))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)])
