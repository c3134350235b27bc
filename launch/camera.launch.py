"""One camera: camera_node publishing a camera, a video file or an image folder.

    ros2 launch fer_ros camera.launch.py source:=0
    fer-ros launch fer_ros camera.launch.py source:=clip.mp4 loop:=true

The base that webcam.launch.py and multicam.launch.py include (with every argument below
given), one include per camera. Images go to `image_topic`, calibration to
`camera_info_topic` (relative names resolve inside `namespace`). Parameters come from
config/camera.yaml, then the launch arguments below, then `params_file` (applied last, so
it wins). The camera node is required: when it ends (a file source that is not looped
ends after its last frame) or dies, everything stops.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("source", "0", "camera index (0 = /dev/video0), device path, video file or image folder"),
    ("loop", "false", "replay a file or folder source forever (true/false)"),
    ("fps", "", "camera frame rate; empty = config/camera.yaml's (a file's own rate)"),
    ("image_topic", "camera/image_raw",
     "topic of the images; empty = the node's own name, image_raw"),
    ("camera_info_topic", "camera/camera_info",
     "topic of the camera_info messages; empty = the node's own name, camera_info"),
    ("camera_name", "", "the camera's name in the log when it ends; empty = 'camera node'"),
    ("use_sim_time", "", "use /clock as ROS time (true/false); empty = the node's default "
     "(false)"),
    ("namespace", "", "namespace of the node and its topics"),
    ("params_file", "", "extra parameter file applied after config/camera.yaml; empty = none"),
]


def flag(context, name):
    value = LaunchConfiguration(name).perform(context).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"launch argument {name} must be true or false, got {value!r}")
    return value == "true"


def launch_setup(context):
    override = LaunchConfiguration("params_file").perform(context)
    extra = [override] if override else []
    # value_type=str keeps e.g. source '0' a string, not the int 0
    camera = {"source": ParameterValue(LaunchConfiguration("source"), value_type=str),
              "loop": flag(context, "loop")}
    if LaunchConfiguration("use_sim_time").perform(context):
        camera["use_sim_time"] = flag(context, "use_sim_time")
    fps = LaunchConfiguration("fps").perform(context)
    if fps:
        camera["fps"] = float(fps)
    topics = (("image_raw", LaunchConfiguration("image_topic").perform(context)),
              ("camera_info", LaunchConfiguration("camera_info_topic").perform(context)))
    name = LaunchConfiguration("camera_name").perform(context)
    return [
        Node(package="fer_ros", executable="camera_node", name="camera",
             namespace=LaunchConfiguration("namespace"),
             parameters=[PathJoinSubstitution([FindPackageShare("fer_ros"), "config",
                                               "camera.yaml"]), camera, *extra],
             remappings=[(own, topic) for own, topic in topics if topic], output="screen",
             on_exit=Shutdown(reason=f"camera {name} ended" if name else "camera node ended")),
    ]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)])
