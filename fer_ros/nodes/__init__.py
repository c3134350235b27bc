"""The ROS 2 nodes, one class per file: camera, perception, overlay and greeter.

Each is a thin adapter: parameters and topics here, the work in fer_ros.pipeline,
fer_ros.camera and fer_ros.viewer, the ROS plumbing shared by all in fer_ros.ros."""
