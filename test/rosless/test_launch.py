"""fer-ros launch: launch files run without ROS's launch (the stand-in modules)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fer_ros.paths import fer_ros_command, node_executable, share_dir

FER_ROS = fer_ros_command()[0]

# A stand-in node: reports its command line and parameter files, exits 0 on SIGINT.
FAKE_NODE = f"""#!{sys.executable}
import signal, sys, time

from fer_ros.paths import fer_ros_command, node_executable, share_dir
args = sys.argv[1:]
files = [args[i + 1] for i, a in enumerate(args) if a == "--params-file"]
print("argv:", " ".join(args))
for f in files:
    print("params:", open(f).read().replace("\\n", " | "))
def stop(signum, frame):
    print("got SIGINT")
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
lifetime = float(args[args.index("--lifetime") + 1]) if "--lifetime" in args else 1e9
print("ready", flush=True)
time.sleep(lifetime)
print("done")
"""


@pytest.fixture
def fake_prefix(tmp_path: Path) -> dict[str, str]:
    """An install prefix holding package fake_pkg with executable fake_node."""
    prefix = tmp_path / "prefix"
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "fake_pkg").write_text("")
    exe = prefix / "lib" / "fake_pkg" / "fake_node"
    exe.parent.mkdir(parents=True)
    exe.write_text(FAKE_NODE)
    exe.chmod(0o755)
    path = os.pathsep.join(p for p in [str(prefix), os.environ.get("AMENT_PREFIX_PATH")] if p)
    return {"AMENT_PREFIX_PATH": path}


def write_launch(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "test.launch.py"
    path.write_text(textwrap.dedent(body))
    return path


def wait_output(proc, text: str, count: int = 1, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.output().count(text) >= count:
            return True
        if proc.popen.poll() is not None:
            break
        time.sleep(0.05)
    return proc.output().count(text) >= count


TWO_NODES = """
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, LogInfo
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration, PythonExpression
    from launch_ros.actions import Node

    def generate_launch_description():
        greeting = LaunchConfiguration("greeting")
        return LaunchDescription([
            DeclareLaunchArgument("greeting", default_value="hello", description="a word"),
            DeclareLaunchArgument("second", default_value="false"),
            LogInfo(msg=["greeting is ", greeting]),
            Node(package="fake_pkg", executable="fake_node", name="one", namespace="ns",
                 arguments=[greeting], parameters=[{"greeting": greeting, "count": "3"}],
                 remappings=[("image", "/camera/image_raw")]),
            Node(package="fake_pkg", executable="fake_node", name="two",
                 condition=IfCondition(PythonExpression(["'", LaunchConfiguration("second"),
                                                         "' == 'true'"]))),
        ])
"""


def test_runs_nodes_substitutes_and_forwards_ctrl_c(tmp_path, spawn, fake_prefix) -> None:
    launch_file = write_launch(tmp_path, TWO_NODES)
    proc = spawn([FER_ROS, "launch", str(launch_file), "greeting:=hi", "second:=true"],
                 "launch", env=fake_prefix)
    assert wait_output(proc, "ready", 2), proc.output()
    out = proc.output()
    assert "greeting is hi" in out
    assert "[one] argv: hi --ros-args -r __node:=one -r __ns:=/ns --params-file" in out
    assert "-r image:=/camera/image_raw" in out
    # Types as launch_ros gives them: substituted text read as YAML ('3' -> 3).
    assert "[one] params: /**: |   ros__parameters: |     count: 3 |     greeting: hi" in out
    assert "[two] argv: --ros-args -r __node:=two" in out
    assert proc.interrupt() == 0
    out = proc.log_path.read_text()  # (interrupt closes Proc's log handle)
    assert "[one] got SIGINT" in out and "[two] got SIGINT" in out
    assert "Traceback" not in out


def test_condition_false_skips_node(tmp_path, spawn, fake_prefix) -> None:
    launch_file = write_launch(tmp_path, TWO_NODES)
    proc = spawn([FER_ROS, "launch", str(launch_file)], "launch", env=fake_prefix)
    assert wait_output(proc, "[one] ready"), proc.output()
    time.sleep(0.5)
    assert "[two]" not in proc.output()
    assert "greeting is hello" in proc.output()
    assert proc.interrupt() == 0


def test_required_node_exit_stops_the_rest(tmp_path, spawn, fake_prefix) -> None:
    launch_file = write_launch(tmp_path, """
        from launch import LaunchDescription
        from launch.actions import Shutdown
        from launch_ros.actions import Node

        def generate_launch_description():
            return LaunchDescription([
                Node(package="fake_pkg", executable="fake_node", name="long"),
                Node(package="fake_pkg", executable="fake_node", name="short",
                     arguments=["--lifetime", "1.0"], on_exit=Shutdown()),
            ])
    """)
    proc = spawn([FER_ROS, "launch", str(launch_file)], "launch", env=fake_prefix)
    assert proc.popen.wait(20) == 0, proc.output()
    out = proc.output()
    assert "[short] done" in out and "[long] got SIGINT" in out
    assert "required process short exited" in out
    assert "Traceback" not in out


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([FER_ROS, "launch", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_unsupported_and_missing_things_fail_clearly(tmp_path, fake_prefix) -> None:
    unsupported = write_launch(tmp_path, """
        from launch import LaunchDescription
        from launch.actions import TimerAction

        def generate_launch_description():
            return LaunchDescription([TimerAction(period=1.0, actions=[])])
    """)
    out = run_cli(str(unsupported))
    assert out.returncode != 0
    assert "fer-ros launch does not support launch.actions.TimerAction; install ROS 2 and " \
           "use ros2 launch" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr

    missing = tmp_path / "missing.launch.py"
    missing.write_text(textwrap.dedent("""
        from launch import LaunchDescription
        from launch_ros.actions import Node

        def generate_launch_description():
            return LaunchDescription([Node(package="fake_pkg", executable="nope")])
    """))
    out = run_cli(str(missing), env=fake_prefix)
    assert out.returncode == 1
    assert "executable 'nope' not found in package 'fake_pkg'" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr

    out = run_cli(str(missing), "bad-argument")
    assert out.returncode == 1 and "name:=value" in out.stderr


def test_show_args_of_the_package_launch_files() -> None:
    out = run_cli("fer_ros", "webcam.launch.py", "--show-args")
    assert out.returncode == 0, out.stderr
    for name in ("source", "gallery", "device", "viewer", "viewer_port", "greeter",
                 "loop", "namespace", "params_file"):
        assert f"'{name}':" in out.stdout
    assert "(default: '0')" in out.stdout
    out = run_cli("fer_ros", "bag.launch.py", "--show-args")
    assert out.returncode == 0 and "'image_topic':" in out.stdout
    assert "(default: '/camera/image_raw')" in out.stdout


def test_webcam_launch_plan(tmp_path) -> None:
    """What webcam.launch.py would start, without starting it."""
    from fer_ros.rosless.launch_runner import Runner

    share = share_dir()
    runner = Runner(share / "launch" / "webcam.launch.py",
                    {"source": "0", "greeter": "true", "viewer": "false"})
    context = runner.plan(tmp_path / "params")
    specs = {spec.name: spec for spec in context.processes}
    assert set(specs) == {"camera", "perception", "greeter"}
    camera = specs["camera"]
    assert camera.required and not specs["perception"].required
    assert camera.cmd[0] == str(node_executable("camera_node"))
    assert "image_raw:=camera/image_raw" in camera.cmd
    assert str(share / "config" / "camera.yaml") in camera.cmd
    dict_params = Path(camera.cmd[camera.cmd.index(str(share / "config" / "camera.yaml")) + 2])
    assert "source: '0'" in dict_params.read_text()  # a string, as camera_node declares it
    assert "image:=camera/image_raw" in specs["perception"].cmd

    with pytest.raises(Exception, match="viewer must be true or false"):
        Runner(share / "launch" / "webcam.launch.py", {"viewer": "maybe"}).plan(tmp_path)


# A launch file of fake_pkg (share/fake_pkg/launch/inner.launch.py) that others include.
INNER = """
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def generate_launch_description():
        return LaunchDescription([
            DeclareLaunchArgument("word", default_value="inner-default",
                                  description="the inner word"),
            DeclareLaunchArgument("node_name", default_value="inner"),
            Node(package="fake_pkg", executable="fake_node",
                 name=LaunchConfiguration("node_name"), arguments=[LaunchConfiguration("word")]),
        ])
"""

OUTER = """
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription, LogInfo
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    def generate_launch_description():
        inner = PathJoinSubstitution([FindPackageShare("fake_pkg"), "launch", "inner.launch.py"])
        return LaunchDescription([
            DeclareLaunchArgument("outer_word", default_value="hello"),
            # Scoped: what the include sets stays in the group.
            GroupAction([IncludeLaunchDescription(
                PythonLaunchDescriptionSource(inner),
                launch_arguments={"word": LaunchConfiguration("outer_word"),
                                  "node_name": "first"}.items())]),
            # Not scoped, as in real launch: word keeps its default, and is set afterwards.
            IncludeLaunchDescription(PythonLaunchDescriptionSource(inner),
                                     launch_arguments=[("node_name", "second")]),
            LogInfo(msg=["after the includes: ", LaunchConfiguration("node_name"), " ",
                         LaunchConfiguration("word")]),
        ])
"""


@pytest.fixture
def inner_launch(fake_prefix: dict[str, str]) -> dict[str, str]:
    """fake_prefix, with share/fake_pkg/launch/inner.launch.py."""
    prefix = Path(fake_prefix["AMENT_PREFIX_PATH"].split(os.pathsep)[0])
    launch_dir = prefix / "share" / "fake_pkg" / "launch"
    launch_dir.mkdir(parents=True)
    (launch_dir / "inner.launch.py").write_text(textwrap.dedent(INNER))
    return fake_prefix


def test_include_passes_arguments_and_keeps_defaults(tmp_path, spawn, inner_launch) -> None:
    launch_file = write_launch(tmp_path, OUTER)
    proc = spawn([FER_ROS, "launch", str(launch_file), "outer_word:=hi"], "launch",
                 env=inner_launch)
    assert wait_output(proc, "ready", 2), proc.output()
    out = proc.output()
    # The included file's nodes run; its arguments take the includer's values...
    assert "[first] argv: hi --ros-args -r __node:=first" in out
    # ... and their defaults where the includer gives none.
    assert "[second] argv: inner-default --ros-args -r __node:=second" in out
    assert "after the includes: second inner-default" in out
    assert "is not declared" not in out
    assert proc.interrupt() == 0
    out = proc.log_path.read_text()
    assert "[first] got SIGINT" in out and "[second] got SIGINT" in out
    assert "Traceback" not in out


def test_include_show_args_and_errors(tmp_path, inner_launch) -> None:
    outer = write_launch(tmp_path, OUTER)
    out = run_cli(str(outer), "--show-args", env=inner_launch)
    assert out.returncode == 0, out.stderr
    # The included file's arguments are listed too, each once.
    assert out.stdout.count("'word':") == 1 and out.stdout.count("'node_name':") == 1
    assert "the inner word" in out.stdout and "(default: 'inner-default')" in out.stdout

    prefix = Path(inner_launch["AMENT_PREFIX_PATH"].split(os.pathsep)[0])
    (prefix / "share" / "fake_pkg" / "launch" / "needs.launch.py").write_text(textwrap.dedent("""
        from launch import LaunchDescription
        from launch.actions import DeclareLaunchArgument

        def generate_launch_description():
            return LaunchDescription([DeclareLaunchArgument("needed", description="must")])
    """))
    for name, expected in (("needs.launch.py", "misses required argument 'needed'"),
                           ("absent.launch.py", "absent.launch.py does not exist")):
        including = tmp_path / f"include_{name}"
        including.write_text(textwrap.dedent(f"""
            from launch import LaunchDescription
            from launch.actions import IncludeLaunchDescription
            from launch.launch_description_sources import PythonLaunchDescriptionSource
            from launch.substitutions import PathJoinSubstitution
            from launch_ros.substitutions import FindPackageShare

            def generate_launch_description():
                path = PathJoinSubstitution([FindPackageShare("fake_pkg"), "launch", "{name}"])
                return LaunchDescription([
                    IncludeLaunchDescription(PythonLaunchDescriptionSource(path))])
        """))
        out = run_cli(str(including), env=inner_launch)
        assert out.returncode == 1 and expected in out.stderr, out.stderr
        assert "Traceback" not in out.stdout + out.stderr


def plan(tmp_path: Path, launch_file: str, args: dict[str, str]) -> list:
    from fer_ros.rosless.launch_runner import Runner

    context = Runner(share_dir() / "launch" / launch_file, args).plan(tmp_path / "params")
    return context.processes


def dict_params(spec) -> str:
    """The parameters that the launch file gave as a dict (the YAML file made of it)."""
    files = [spec.cmd[i + 1] for i, arg in enumerate(spec.cmd) if arg == "--params-file"]
    return "".join(Path(f).read_text() for f in files if Path(f).parent.name == "params")


def test_package_launch_files_include_the_base_files(tmp_path) -> None:
    """webcam, bag and multicam.launch.py start their nodes through the included
    camera.launch.py and perception.launch.py, with their own arguments."""
    share = share_dir()
    multicam = plan(tmp_path, "multicam.launch.py",
                    {"cameras": "front,back", "sources": "0,clip.mp4", "namespace": "/site/"})
    assert [s.name for s in multicam] == ["perception", "camera", "camera"]
    perception, front, back = multicam
    remaps = [arg for arg in perception.cmd if ":=" in arg and not arg.startswith("__")]
    assert remaps == []  # it reads N/image for each camera N
    assert "streams:\n    - front\n    - back" in dict_params(perception)
    assert "__ns:=/site/front" in front.cmd and "__ns:=/site/back" in back.cmd
    assert front.cmd[-2:] == ["-r", "image_raw:=image"] and front.required
    assert "source: '0'" in dict_params(front) and "source: clip.mp4" in dict_params(back)

    bag = plan(tmp_path, "bag.launch.py", {"bag": "rec", "use_sim_time": "true",
                                           "viewer": "true", "image_topic": "/img"})
    assert [s.name for s in bag] == ["perception", "overlay", "bag_play"]
    assert bag[2].cmd == ["fer-ros", "bag", "play", "rec", "--rate", "1.0", "--clock"]
    assert bag[2].required
    for spec in bag[:2]:
        assert "use_sim_time: true" in dict_params(spec)
        assert "image:=/img" in spec.cmd
    assert "camera_info:=/camera/camera_info" in bag[0].cmd

    webcam = plan(tmp_path, "webcam.launch.py", {"source": "clip.mp4", "fps": "5",
                                                 "gallery": "/g.json", "video_path": "/v.mp4"})
    assert [s.name for s in webcam] == ["camera", "perception", "overlay"]
    assert "fps: 5.0" in dict_params(webcam[0])
    assert "gallery_path: /g.json" in dict_params(webcam[1])
    assert "use_sim_time" not in dict_params(webcam[1])
    assert "video_path: /v.mp4" in dict_params(webcam[2])
    assert str(share / "config" / "overlay.yaml") in webcam[2].cmd

    # The base files run on their own too.
    alone = plan(tmp_path, "perception.launch.py", {})
    assert [s.name for s in alone] == ["perception"]
    assert alone[0].cmd[-4:] == ["-r", "image:=camera/image_raw",
                                 "-r", "camera_info:=camera/camera_info"]
    camera = plan(tmp_path, "camera.launch.py", {"source": "1"})
    assert [s.name for s in camera] == ["camera"] and camera[0].required


def test_robot_launch_runs_perception_and_viewer_on_an_existing_camera(tmp_path) -> None:
    """robot.launch.py: no camera node; the driver's topic, its compressed sibling, its
    camera_info beside it, and the lifecycle and clock arguments every launch file has."""
    robot = plan(tmp_path, "robot.launch.py", {
        "image": "/head_front_camera/color/image_raw", "image_transport": "compressed",
        "autostart": "false", "use_sim_time": "true", "namespace": "/pal"})
    assert [s.name for s in robot] == ["perception", "overlay"]
    perception, overlay = robot
    assert perception.cmd[-4:] == ["-r", "image:=/head_front_camera/color/image_raw",
                                   "-r", "camera_info:=/head_front_camera/color/camera_info"]
    assert "image:=/head_front_camera/color/image_raw" in overlay.cmd
    for spec in robot:
        assert "__ns:=/pal" in spec.cmd
        assert "image_transport: compressed" in dict_params(spec)
        assert "use_sim_time: true" in dict_params(spec)
    assert "autostart: false" in dict_params(perception)
    assert "autostart" not in dict_params(overlay)
    # A relative topic's sibling is relative too; camera_info given: taken as it is.
    relative = plan(tmp_path, "robot.launch.py", {"image": "cam/image_raw", "viewer": "false"})
    assert [s.name for s in relative] == ["perception"]
    assert relative[0].cmd[-4:] == ["-r", "image:=cam/image_raw",
                                    "-r", "camera_info:=cam/camera_info"]
    assert "image_transport: raw" in dict_params(relative[0])
    assert "autostart: true" in dict_params(relative[0])
    given = plan(tmp_path, "robot.launch.py", {"image": "image_raw", "camera_info": "/info"})
    assert "camera_info:=/info" in given[0].cmd and "camera_info:=camera_info" not in \
        given[0].cmd


def test_every_launch_file_takes_autostart_and_use_sim_time(tmp_path) -> None:
    webcam = plan(tmp_path, "webcam.launch.py", {"source": "clip.mp4", "autostart": "false",
                                                 "use_sim_time": "true"})
    assert [s.name for s in webcam] == ["camera", "perception", "overlay"]
    assert all("use_sim_time: true" in dict_params(spec) for spec in webcam)
    assert "autostart: false" in dict_params(webcam[1])
    bag = plan(tmp_path, "bag.launch.py", {"autostart": "false",
                                           "image_transport": "compressed"})
    assert "autostart: false" in dict_params(bag[0])
    assert "image_transport: compressed" in dict_params(bag[0])
    multicam = plan(tmp_path, "multicam.launch.py", {"cameras": "a", "sources": "0",
                                                     "autostart": "false",
                                                     "use_sim_time": "true"})
    assert [s.name for s in multicam] == ["perception", "camera"]
    assert "autostart: false" in dict_params(multicam[0])
    assert all("use_sim_time: true" in dict_params(spec) for spec in multicam)
    camera = plan(tmp_path, "camera.launch.py", {"use_sim_time": "true"})
    assert "use_sim_time: true" in dict_params(camera[0])
    for name in ("webcam", "bag", "multicam", "robot", "perception", "camera"):
        text = (share_dir() / "launch" / f"{name}.launch.py").read_text()
        assert '("use_sim_time",' in text, name
        assert name == "camera" or '("autostart",' in text, name


def test_rviz_config_shows_our_topics_and_frames() -> None:
    import yaml

    config = yaml.safe_load((share_dir() / "rviz" / "fer_ros.rviz").read_text())
    manager = config["Visualization Manager"]
    displays = {d["Class"]: d for d in manager["Displays"]}
    assert displays["rviz_default_plugins/Image"]["Topic"]["Value"] == "/faces/overlay"
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "/faces/markers"
    assert displays["rviz_default_plugins/TF"]["Enabled"] is True
    # The markers' frame: the camera node's default frame_id.
    assert manager["Global Options"]["Fixed Frame"] == "camera_optical_frame"
    from fer_ros.nodes.camera_node import PARAMS

    assert next(p.default for p in PARAMS if p.name == "frame_id") == "camera_optical_frame"


def test_rviz_starts_where_it_is_installed_and_is_named_where_not(
        tmp_path, capsys, fake_prefix, monkeypatch) -> None:
    args = {"source": "clip.mp4", "rviz": "true", "use_sim_time": "true"}
    webcam = plan(tmp_path, "webcam.launch.py", args)
    assert [s.name for s in webcam] == ["camera", "perception", "overlay"]
    assert capsys.readouterr().out.count("rviz:=true, but rviz2 is not installed here") == 1
    # With an rviz2 package on the prefix path (a stand-in executable), it is started.
    prefix = Path(fake_prefix["AMENT_PREFIX_PATH"].split(os.pathsep)[0])
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").write_text("")
    exe = prefix / "lib" / "rviz2" / "rviz2"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("AMENT_PREFIX_PATH", fake_prefix["AMENT_PREFIX_PATH"])
    with_rviz = plan(tmp_path, "robot.launch.py", {"image": "/cam/image_raw", "rviz": "true",
                                                    "use_sim_time": "true"})
    assert [s.name for s in with_rviz] == ["perception", "overlay", "rviz2"]
    rviz = with_rviz[2]
    assert rviz.cmd[:3] == [str(exe), "-d", str(share_dir() / "rviz" / "fer_ros.rviz")]
    assert "use_sim_time: true" in dict_params(rviz)
    assert "rviz2 is not installed" not in capsys.readouterr().out
