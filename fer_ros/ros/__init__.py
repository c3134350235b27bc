"""ROS plumbing shared by the nodes and tools: parameters, QoS profiles, the nodes'
main() (init, spin, clean Ctrl-C), Image <-> numpy without cv_bridge, and a node spun
in the background for tools and tests."""
