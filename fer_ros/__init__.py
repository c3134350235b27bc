"""fer_ros: faces, names and emotions for ROS 2."""

__version__ = "0.2.0"
