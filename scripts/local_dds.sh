# Sourced by the Makefile's scripts: keeps DDS on this machine. Fast DDS's default
# discovery multicasts out of the real network interface; shared memory only means
# no UDP at all. On a robot, leave these unset and use your own DDS settings.
export FASTDDS_BUILTIN_TRANSPORTS="${FASTDDS_BUILTIN_TRANSPORTS:-SHM?sockets_size=16MB&max_msg_size=4MB}"
# LOCALHOST discovery would override the SHM-only transport above: keep it unset.
unset ROS_AUTOMATIC_DISCOVERY_RANGE
export ROS_LOG_DIR="${ROS_LOG_DIR:-$PWD/build/ros_log}"
export HOME="${HOME:-$PWD/build/home}"
export AMENT_PREFIX_PATH="$PWD/${VENV:-.venv}${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$PWD/${VENV:-.venv}/bin:$PATH"
