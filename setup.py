"""pip entry point for the ROS-free part of fer_ros (see setup.cfg).

ROS users build with colcon (CMakeLists.txt), which also generates the messages.
"""

from setuptools import setup

setup()
