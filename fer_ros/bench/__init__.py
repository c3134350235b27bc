"""``fer-ros bench``: the live pipeline's fps, latency, CPU and memory beside its peers.

run (the steps of one benchmark), data (machine description, the fixed bags), live (the
perception_node over DDS), peers (in-process runners and identity accuracy), report
(ratios, floors, table, plot), backends (``fer-ros bench --backends``: FaceNet on
PyTorch, TorchScript and ONNX Runtime); other measurements have modules of their own.
The command's options are in fer_ros/cli/bench.py. Nothing heavy is imported here: the
argument parser reads these constants without loading torch and the pipeline.
"""

RATE_HZ = 30.0
TOPIC = "/bench/image_raw"
BAGS = ("1face", "3faces", "5faces")
