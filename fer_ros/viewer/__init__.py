"""Drawing faces on images and serving them as an MJPEG stream (no ROS): used by the
overlay node."""
