"""perception_node's parameters: each with its description, range or choices and
read-only flag (fer_ros/ros/params.py). Those that set the face pipeline are built from
PipelineConfig's fields (fer_ros/pipeline/config.py: description, limits, and the live
preset's value as the default), so they are written once; the node's own are here.
config/perception.yaml holds them all (a test keeps the two identical)."""

from __future__ import annotations

from fer_ros.nodes.perception.image_streams import check_stream_names
from fer_ros.pipeline.config import live_default, param_name, settings
from fer_ros.ros.params import ParamSpec
from fer_ros.ros.qos import QOS_CHOICES
from fer_ros.ros.transport import TRANSPORT_DESCRIPTION, TRANSPORTS


def pipeline_param(field: str) -> ParamSpec:
    """The parameter that sets PipelineConfig's ``field``: read-only unless the
    pipeline can change it between images."""
    setting = dict(settings())[field]
    default = live_default(field)
    if isinstance(default, tuple):
        default = list(default)  # ROS has arrays, not tuples
    return ParamSpec(param_name(field), default, setting.description, setting.limits,
                     read_only=not setting.runtime, choices=setting.choices)


PARAMS = (
    ParamSpec("autostart", True, "Configure and activate at start-up (load the models, "
              "subscribe). False: the node waits in the lifecycle state 'unconfigured' for a "
              "lifecycle manager (ros2 lifecycle set /perception configure).", read_only=True),
    ParamSpec("gallery_path", "", "Gallery of enrolled people: a .json file, an SQLite file "
              "(.db/.sqlite) or a postgresql:// URL shared by several robots (password from "
              "PGPASSWORD or ~/.pgpass rather than the URL); empty = no gallery, every face is "
              "'unknown'. Created on the first enrolment."),
    ParamSpec("persist_gallery", True, "Write run-time enrolments to gallery_path (JSON: "
              "atomically, mode 0600; SQLite/PostgreSQL: one transaction). False keeps them "
              "in memory only."),
    ParamSpec("retention_days", 0.0, "Forget (as ~/forget does: embeddings erased, tombstone "
              "kept) people not seen for this many days (or, never seen, not enrolled); 0 = "
              "keep them. Who was seen is written to the gallery at most once a minute; "
              "needs persist_gallery.", (0.0, 36500.0)),
    pipeline_param("recognition_threshold"),
    pipeline_param("recognition_margin"),
    ParamSpec("streams", [""], "Cameras served by this node: for each name N, images from "
              "N/image (and N/camera_info), results on N/faces/emotions; '' = image -> "
              "faces/emotions. Each stream has its own tracks, messages and diagnostics; "
              "their faces are batched together. Can change only while the node is "
              "inactive (deactivate, set, activate). launch/multicam.launch.py sets it from its "
              "`cameras` argument.", rule=check_stream_names),
    pipeline_param("device"),
    pipeline_param("half_precision"),
    pipeline_param("backend"),
    pipeline_param("face_search"),
    pipeline_param("min_face_size"),
    pipeline_param("detection_thresholds"),
    pipeline_param("detection_min_score"),
    pipeline_param("downscale"),
    pipeline_param("search_max_width"),
    pipeline_param("recognition"),
    pipeline_param("emotion"),
    pipeline_param("tracking"),
    pipeline_param("embedding_model"),
    pipeline_param("facenet_weights"),
    pipeline_param("emotion_weights"),
    pipeline_param("emotion_smoothing"),
    pipeline_param("full_detection_interval"),
    pipeline_param("async_detection"),
    pipeline_param("blocking_search_max_width"),
    pipeline_param("search_change_threshold"),
    pipeline_param("reembed_interval"),
    pipeline_param("async_reembed"),
    pipeline_param("vote_window"),
    pipeline_param("track_max_age"),
    pipeline_param("track_similarity"),
    pipeline_param("track_reid_window"),
    pipeline_param("idle_detection_rate"),
    pipeline_param("idle_change_threshold"),
    pipeline_param("idle_refresh_period"),
    ParamSpec("fov_deg", 60.0, "Horizontal field of view (degrees) assumed for head poses "
              "while no camera_info of the image's size arrives.", (1.0, 179.0)),
    ParamSpec("queue_size", 1, "Images kept waiting per stream while inference runs, "
              "processed oldest first; when full, the oldest is dropped (and counted). 1 = "
              "only the newest: the least latency on a live camera. Larger: a bag played "
              "faster than inference loses no image while its backlog fits.", (1, 1000)),
    ParamSpec("publish_tf", True, "Publish a TF frame per tracked face with a head pose: "
              "face_<track id> (face_<stream>_<id> for a named stream of `streams`), child of "
              "the image's header.frame_id, at the image's stamp, on /tf. Needs tf2_msgs (a "
              "ROS 2 install has it; without it the node says so once and carries on).",
              read_only=True),
    ParamSpec("image_transport", "raw", TRANSPORT_DESCRIPTION, read_only=True,
              choices=TRANSPORTS),
    ParamSpec("qos", "sensor_data", "Image (and camera_info) subscription QoS: sensor_data "
              "(best effort, as camera drivers publish), reliable or system_default.",
              read_only=True, choices=QOS_CHOICES),
    ParamSpec("torch_threads", 1, "CPU threads for inference; 0 = PyTorch's default (one "
              "per core). 1 leaves the other cores to the camera, DDS and other nodes; on "
              "2 cores it is also faster than 2 threads competing with them.",
              (0, 256), read_only=True),
    ParamSpec("gallery_watch_period", 1.0, "Seconds between checks of the gallery for changes "
              "made by others (PostgreSQL also notifies at once); 0 = only reload on the "
              "service call.", (0.0, 3600.0), read_only=True),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.",
              (0.1, 60.0), read_only=True),
    ParamSpec("latency_warn_ms", 250.0, "Mean latency (image stamp to publish) above which "
              "diagnostics report WARN.", (1.0, 60000.0)),
    ParamSpec("drop_warn_ratio", 0.5, "Fraction of dropped images above which diagnostics "
              "report WARN.", (0.0, 1.0)),
)
