"""Camera frame sources (V4L2 device, video file, image folder), without ROS."""
