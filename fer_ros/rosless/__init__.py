"""Stand-ins for ROS 2 tools, used only where no ROS install exists.

The PyPI wheels of ROS 2 carry rclpy but no ``launch``/``launch_ros``, ``ros2 bag`` or
``rosbag2_py``. This package fills that gap for ``fer-ros launch`` (launch_runner,
launch_shim and the stand-in modules it installs, launch_supervisor) and ``fer-ros bag``
(bag: typestore, metadata and info; bag_play; bag_record). With a ROS install, use
``ros2 launch`` and ``ros2 bag``: they read the same launch files and bags.
"""
