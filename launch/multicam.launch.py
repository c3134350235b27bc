"""Several cameras, one perception node: faces of all cameras batched on one set of models.

    ros2 launch fer_ros multicam.launch.py cameras:=front,back sources:=0,1
    ros2 launch fer_ros multicam.launch.py cameras:=robot1,robot2 sources:=   # cameras elsewhere
    fer-ros launch fer_ros multicam.launch.py cameras:=a,b sources:=a.mp4,b.mp4 loop:=true

For each camera name N (relative to `namespace`): images on N/image and N/camera_info,
results on N/faces/emotions, diagnostics status "fer_ros: perception N". With `sources`
one camera_node per camera is started (node /N/camera, config/camera.yaml); with
`sources` empty none is, and the images come from elsewhere over DDS, e.g. camera nodes
on robots publishing <robot>/image for a perception host (see the README's "Many cameras").
The perception node's `streams` parameter is set from `cameras`; the other parameters
come from config/perception.yaml, then the arguments below, then `params_file`.
For one camera use webcam.launch.py (its topics are camera/image_raw -> faces/emotions).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("cameras", "cam1,cam2", "comma-separated camera names (topic prefixes)"),
    ("sources", "", "comma-separated camera sources, one per camera (index, device path, "
     "video file or image folder); empty = start no camera nodes"),
    ("loop", "false", "replay file or folder sources forever (true/false)"),
    ("gallery", "", "gallery of enrolled people; empty = config/perception.yaml's"),
    ("device", "", "inference device: auto, cpu or cuda[:N]; empty = config/perception.yaml's"),
    ("half_precision", "", "float16 FaceNet and emotion on CUDA (true/false); empty = "
     "config/perception.yaml's"),
    ("namespace", "", "namespace of all nodes and topics"),
    ("params_file", "", "extra parameter file applied after config/*.yaml; empty = none"),
]


def text(context, name):
    return LaunchConfiguration(name).perform(context).strip()


def names(context, name):
    return [part.strip() for part in text(context, name).split(",") if part.strip()]


def flag(value, name):
    if value.lower() not in ("true", "false"):
        raise ValueError(f"launch argument {name} must be true or false, got {value!r}")
    return value.lower() == "true"


def config(name):
    return PathJoinSubstitution([FindPackageShare("fer_ros"), "config", name])


def launch_setup(context):
    cameras = names(context, "cameras")
    sources = names(context, "sources")
    if not cameras:
        raise ValueError("launch argument cameras must name at least one camera")
    if sources and len(sources) != len(cameras):
        raise ValueError(f"{len(sources)} sources for {len(cameras)} cameras: give one "
                         f"source per camera, or none")
    override = text(context, "params_file")
    extra = [override] if override else []
    namespace = text(context, "namespace").strip("/")
    perception = {"streams": cameras}
    for arg, key in (("gallery", "gallery_path"), ("device", "device")):
        if text(context, arg):
            perception[key] = text(context, arg)
    if text(context, "half_precision"):
        perception["half_precision"] = flag(text(context, "half_precision"), "half_precision")
    nodes = [Node(package="fer_ros", executable="perception_node", name="perception",
                  namespace=namespace,
                  parameters=[config("perception.yaml"), perception, *extra], output="screen")]
    loop = flag(text(context, "loop"), "loop")
    for camera, source in zip(cameras, sources, strict=False):
        nodes.append(Node(
            package="fer_ros", executable="camera_node", name="camera",
            namespace=f"{namespace}/{camera}".strip("/"),
            # value_type=str keeps a source such as "0" a string, not the int 0
            parameters=[config("camera.yaml"),
                        {"source": ParameterValue(source, value_type=str), "loop": loop},
                        *extra],
            remappings=[("image_raw", "image")], output="screen",
            on_exit=Shutdown(reason=f"camera {camera} ended")))
    return nodes


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)])
