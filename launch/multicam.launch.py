"""Several cameras, one perception node: faces of all cameras batched on one set of models.

    ros2 launch fer_ros multicam.launch.py cameras:=front,back sources:=0,1
    ros2 launch fer_ros multicam.launch.py cameras:=robot1,robot2 sources:=   # cameras elsewhere
    fer-ros launch fer_ros multicam.launch.py cameras:=a,b sources:=a.mp4,b.mp4 loop:=true

For each camera name N (relative to `namespace`): images on N/image and N/camera_info,
results on N/faces/emotions, diagnostics status "perception: perception N". With `sources`
one camera_node per camera is started (node /N/camera, config/camera.yaml); with
`sources` empty none is, and the images come from elsewhere over DDS, e.g. camera nodes
on robots publishing <robot>/image for a perception host (see the README's "Many cameras").
The perception node's `streams` parameter is set from `cameras`; the other parameters
come from config/perception.yaml, then the arguments below, then `params_file`.
For one camera use webcam.launch.py (its topics are camera/image_raw -> faces/emotions).
The nodes come from perception.launch.py and camera.launch.py (once per camera), included
with this file's arguments.
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
    ("cameras", "cam1,cam2", "comma-separated camera names (topic prefixes)"),
    ("sources", "", "comma-separated camera sources, one per camera (index, device path, "
     "video file or image folder); empty = start no camera nodes"),
    ("loop", "false", "replay file or folder sources forever (true/false)"),
    ("gallery", "", "gallery of enrolled people; empty = config/perception.yaml's"),
    ("device", "", "inference device: auto, cpu or cuda[:N]; empty = config/perception.yaml's"),
    ("half_precision", "", "float16 FaceNet and emotion on CUDA (true/false); empty = "
     "config/perception.yaml's"),
    ("image_transport", "raw", "raw (sensor_msgs/Image) or compressed (JPEG/PNG from "
     "N/image/compressed)"),
    ("autostart", "true", "perception configures and activates itself (true/false); false: "
     "a lifecycle manager drives it"),
    ("use_sim_time", "", "use /clock as ROS time (true/false); empty = the nodes' default "
     "(false)"),
    ("namespace", "", "namespace of all nodes and topics"),
    ("params_file", "", "extra parameter file applied after config/*.yaml; empty = none"),
]


def include(launch_file, **arguments):
    """launch_file of this package, given every one of its arguments; in a scoped group, so
    the values set for it stay there."""
    path = PathJoinSubstitution([FindPackageShare("fer_ros"), "launch", launch_file])
    return GroupAction([IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                                 launch_arguments=arguments.items())])


def text(context, name):
    return LaunchConfiguration(name).perform(context).strip()


def names(context, name):
    return [part.strip() for part in text(context, name).split(",") if part.strip()]


def launch_setup(context):
    cameras = names(context, "cameras")
    sources = names(context, "sources")
    if not cameras:
        raise ValueError("launch argument cameras must name at least one camera")
    if sources and len(sources) != len(cameras):
        raise ValueError(f"{len(sources)} sources for {len(cameras)} cameras: give one "
                         f"source per camera, or none")
    params_file = text(context, "params_file")
    namespace = text(context, "namespace").strip("/")
    # One perception node for all cameras: no remappings, it reads N/image per camera N.
    actions = [include("perception.launch.py", image_topic="", camera_info_topic="",
                       streams=",".join(cameras), gallery=text(context, "gallery"),
                       device=text(context, "device"),
                       half_precision=text(context, "half_precision"), queue_size="",
                       image_transport=text(context, "image_transport"),
                       autostart=text(context, "autostart"),
                       use_sim_time=text(context, "use_sim_time"),
                       viewer="false", viewer_port="", video_path="", greeter="false", rviz="false",
                       namespace=namespace, params_file=params_file)]
    for camera, source in zip(cameras, sources, strict=False):
        actions.append(include(
            "camera.launch.py", source=source, loop=text(context, "loop"), fps="",
            image_topic="image", camera_info_topic="", camera_name=camera,
            use_sim_time=text(context, "use_sim_time"),
            namespace=f"{namespace}/{camera}".strip("/"), params_file=params_file))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)])
