"""Live pipeline: camera -> perception (faces, names, emotions) -> overlay viewer (+ greeter).

    ros2 launch fer_ros webcam.launch.py source:=0 gallery:=~/gallery.json
    fer-ros launch fer_ros webcam.launch.py source:=clip.mp4 viewer:=false

Topics (relative to `namespace`, so with the default they are absolute): camera/image_raw,
camera/camera_info, faces/emotions, faces/overlay. Parameters come from config/<node>.yaml,
then the launch arguments below, then `params_file` (applied last, so it wins).
The camera node is required: when it ends (a file source that is not looped ends after
its last frame) or dies, everything stops.
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
    ("gallery", "", "gallery file (JSON) of enrolled people; empty = config/perception.yaml's"),
    ("device", "", "inference device: auto, cpu or cuda[:N]; empty = config/perception.yaml's"),
    ("viewer", "true", "start overlay_node, the MJPEG viewer (true/false)"),
    ("viewer_port", "", "HTTP port of the viewer; empty = config/overlay.yaml's (8080)"),
    ("video_path", "", "also write the annotated video to this file; empty = "
     "config/overlay.yaml's (none)"),
    ("greeter", "false", "start greeter_node, an example behaviour (true/false)"),
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
    text = ParameterValue  # value_type=str keeps e.g. source '0' a string, not the int 0
    camera = {"source": text(LaunchConfiguration("source"), value_type=str),
              "loop": flag(context, "loop")}
    fps = LaunchConfiguration("fps").perform(context)
    if fps:
        camera["fps"] = float(fps)
    nodes = [
        Node(package="fer_ros", executable="camera_node", name="camera", namespace=namespace,
             parameters=[config("camera.yaml"), camera, *extra],
             remappings=[("image_raw", "camera/image_raw"),
                         ("camera_info", "camera/camera_info")],
             output="screen", on_exit=Shutdown(reason="camera node ended")),
        Node(package="fer_ros", executable="perception_node", name="perception",
             namespace=namespace,
             parameters=[config("perception.yaml"),
                         {**given(context, "gallery", "gallery_path"),
                          **given(context, "device", "device")},
                         *extra],
             remappings=[("image", "camera/image_raw"), ("camera_info", "camera/camera_info")],
             output="screen"),
    ]
    if flag(context, "viewer"):
        nodes.append(Node(
            package="fer_ros", executable="overlay_node", name="overlay", namespace=namespace,
            parameters=[config("overlay.yaml"),
                        {**given(context, "viewer_port", "port", int),
                         **given(context, "video_path", "video_path")},
                        *extra],
            remappings=[("image", "camera/image_raw")], output="screen"))
    if flag(context, "greeter"):
        nodes.append(Node(
            package="fer_ros", executable="greeter_node", name="greeter", namespace=namespace,
            parameters=[config("greeter.yaml"), *extra], output="screen"))
    return nodes


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)])
