"""perception_node's parameters: each with its description, range or choices and
read-only flag (fer_ros/ros/params.py); their defaults are config/perception.yaml (a test
keeps the two identical). Kept apart from the node so the node file stays its behaviour."""

from __future__ import annotations

from fer_ros.ros.image_streams import check_stream_names
from fer_ros.ros.params import ParamSpec
from fer_ros.ros.qos import QOS_CHOICES

PARAMS = (
    ParamSpec("autostart", True, "Configure and activate at start-up (load the models, "
              "subscribe). False: the node waits in the lifecycle state 'unconfigured' for a "
              "lifecycle manager (ros2 lifecycle set /perception configure).", read_only=True),
    ParamSpec("gallery_path", "", "Gallery of enrolled people: a .json file, an SQLite file "
              "(.db/.sqlite) or a postgresql:// URL shared by several robots; empty = no "
              "gallery, every face is 'unknown'. Created on the first enrolment."),
    ParamSpec("persist_gallery", True, "Write run-time enrolments to gallery_path (JSON: "
              "atomically, mode 0600; SQLite/PostgreSQL: one transaction). False keeps them "
              "in memory only."),
    ParamSpec("recognition_threshold", 0.5, "Cosine similarity below which a face is "
              "'unknown'.", (0.0, 1.0)),
    ParamSpec("recognition_margin", 0.05, "How much the best person must beat the second "
              "best; closer calls are 'unknown'.", (0.0, 1.0)),
    ParamSpec("streams", [""], "Cameras served by this node: for each name N, images from "
              "N/image (and N/camera_info), results on N/faces/emotions; '' = image -> "
              "faces/emotions. Each stream has its own tracks, messages and diagnostics; "
              "their faces are batched together. Can change only while the node is "
              "inactive (deactivate, set, activate).", rule=check_stream_names),
    ParamSpec("device", "auto", "auto (CUDA when present), cpu or cuda[:N].", read_only=True),
    ParamSpec("half_precision", False, "Run FaceNet and the emotion model in float16 "
              "(CUDA only; embeddings stay within cosine 0.999 of float32).", read_only=True),
    ParamSpec("backend", "auto", "Runtime of the FaceNet and emotion models: auto (ONNX "
              "Runtime on a CPU for the default models when `fer-ros models fetch` made their "
              "ONNX files, PyTorch otherwise; WARN when a file is missing or fails its "
              "checks), torch, or onnxruntime (fails instead of falling back).",
              read_only=True, choices=("auto", "torch", "onnxruntime")),
    ParamSpec("min_face_size", 40, "Smallest face searched for, in pixels of the input image.",
              (10, 2000), read_only=True),
    ParamSpec("detection_thresholds", [0.6, 0.7, 0.7], "MTCNN P/R/O-Net stage thresholds.",
              read_only=True),
    ParamSpec("detection_min_score", 0.9, "Faces scored below this are dropped.", (0.0, 1.0)),
    ParamSpec("downscale", 1.0, "Detect on the image scaled by this factor (faster; boxes "
              "are mapped back to full resolution).", (0.1, 1.0), read_only=True),
    ParamSpec("enable_recognition", True, "Compute embeddings and names.", read_only=True),
    ParamSpec("enable_emotion", True, "Classify emotions.", read_only=True),
    ParamSpec("enable_tracking", True, "Track faces across images (stable track_id, name "
              "voting, emotion smoothing, fewer embeddings).", read_only=True),
    ParamSpec("facenet_weights", "", "FaceNet weights (.pt); empty = the converted "
              "CASIA-WebFace model from `fer-ros models fetch`.", read_only=True),
    ParamSpec("emotion_weights", "", "Emotion model (.pt from `fer-ros train-emotion`); empty "
              "= the FER2013 mini-Xception.", read_only=True),
    ParamSpec("emotion_smoothing", 0.5, "Weight of the past in the per-track moving average "
              "of emotion probabilities; 0 = this image only.", (0.0, 0.99)),
    ParamSpec("full_detection_interval", 5, "Search the whole image every N images; in "
              "between, only the tracked faces are re-located (much cheaper). New faces "
              "appear within N images. 1 = search every image.", (1, 100)),
    ParamSpec("async_detection", True, "Run that whole-image search on a worker thread "
              "while the tracked faces are re-located in every image, so no image waits for "
              "it; new faces join when it is done. False: the search runs in the image's own "
              "time.", read_only=True),
    ParamSpec("search_change_threshold", 40.0, "With async_detection: when the image "
              "differs from the last searched one by more than this many grey levels in a "
              "thumbnail cell outside the tracked faces (someone may have come in), search "
              "at once instead of at full_detection_interval (at most twice per interval); "
              "0 = only at the interval.", (0.0, 255.0)),
    ParamSpec("reembed_interval", 10, "A tracked face is embedded again every N images.",
              (1, 1000)),
    ParamSpec("async_reembed", True, "Re-embed already named faces on a background "
              "thread, so images never wait for a periodic re-embedding (new faces are "
              "still named before their image is published).", read_only=True),
    ParamSpec("vote_window", 5, "Embeddings a track's name is voted over.", (1, 100),
              read_only=True),
    ParamSpec("track_max_age", 1.0, "Seconds a face may go unseen before its track ends.",
              (0.0, 60.0)),
    ParamSpec("idle_detection_rate", 2.0, "While no face is tracked, search the image for "
              "faces at most this often (Hz, on average; a change after a quiet spell is "
              "searched at once); images not searched are answered with no faces. Lower "
              "costs less in a changing empty scene, higher finds faces sooner there. "
              "0 = search every image.", (0.0, 1000.0)),
    ParamSpec("idle_change_threshold", 12.0, "While no face is tracked, an image whose grey "
              "thumbnail (20x20-pixel cells at 640x480) differs from the last searched one "
              "by at most this many grey levels in every cell is not searched; 0 = every "
              "image counts as changed.", (0.0, 255.0)),
    ParamSpec("idle_refresh_period", 5.0, "Seconds after which an unchanged scene is "
              "searched again while no face is tracked; 0 = never.", (0.0, 3600.0)),
    ParamSpec("fov_deg", 60.0, "Horizontal field of view (degrees) assumed for head poses "
              "while no camera_info of the image's size arrives.", (1.0, 179.0)),
    ParamSpec("qos", "sensor_data", f"Image subscription QoS: {', '.join(QOS_CHOICES)}.",
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

# Parameters named differently from the PipelineConfig field they set.
CONFIG_NAMES = {"enable_recognition": "recognition", "enable_emotion": "emotion",
                 "enable_tracking": "tracking"}
