"""Stand-ins for ``launch.LaunchDescription`` and ``launch.actions``, and their execution."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fer_ros.rosless.launch_core import (
    Action,
    LaunchContext,
    LaunchError,
    ProcessSpec,
    perform,
    truth,
    unsupported,
)


class LaunchDescription:
    def __init__(self, initial_entities: Iterable[Any] | None = None, *,
                 deprecated_reason: str | None = None) -> None:
        self.entities: list[Any] = list(initial_entities or [])

    def add_action(self, action: Any) -> None:
        self.entities.append(action)

    add_entity = add_action

    def visit(self, context: LaunchContext) -> list[Any]:
        return list(self.entities)

    def describe_sub_entities(self) -> list[Any]:
        return self.entities

    def get_launch_arguments(self, conditional_inclusion: bool = False
                             ) -> list[DeclareLaunchArgument]:
        """The arguments declared here, in groups and in included files that load without
        a context; the first declaration of a name wins, as in real launch."""
        found: dict[str, DeclareLaunchArgument] = {}

        def walk(entities: Iterable[Any], conditional: bool) -> None:
            for entity in entities:
                held_conditionally = conditional or getattr(entity, "condition", None) is not None
                if isinstance(entity, DeclareLaunchArgument) and entity.name not in found:
                    entity.conditionally_included = held_conditionally
                    found[entity.name] = entity
                if isinstance(entity, (Action, LaunchDescription)):
                    walk(entity.describe_sub_entities(), held_conditionally)
        walk(self.entities, conditional_inclusion)
        return list(found.values())


def run_entities(entities: Iterable[Any], context: LaunchContext) -> None:
    """Execute a description's entities in order (collecting ProcessSpecs in context)."""
    for entity in entities:
        if context.shutdown_reason:
            return
        if isinstance(entity, LaunchDescription):
            run_entities(entity.entities, context)
        elif isinstance(entity, Action):
            run_entities(entity.visit(context), context)
        else:
            raise unsupported(f"a launch entity of type {type(entity).__name__}")


class DeclareLaunchArgument(Action):
    def __init__(self, name: str, *, default_value: Any = None, description: str = "",
                 choices: Iterable[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.default_value = default_value
        self.description = description
        self.choices = list(choices) if choices is not None else None
        self.conditionally_included = False  # set by LaunchDescription.get_launch_arguments

    def execute(self, context: LaunchContext) -> None:
        if self.name not in context.launch_configurations:
            if self.default_value is None:
                raise LaunchError(f"required launch argument '{self.name}' was not given "
                                  f"(pass {self.name}:=VALUE)")
            context.launch_configurations[self.name] = perform(self.default_value, context)
        value = context.launch_configurations[self.name]
        if self.choices is not None and value not in self.choices:
            raise LaunchError(f"argument '{self.name}' must be one of {self.choices}, "
                              f"got {value!r}")
        return None


class SetLaunchConfiguration(Action):
    def __init__(self, name: Any, value: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name, self.value = name, value

    def execute(self, context: LaunchContext) -> None:
        context.launch_configurations[perform(self.name, context)] = perform(self.value, context)


class LogInfo(Action):
    def __init__(self, *, msg: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.msg = msg

    def execute(self, context: LaunchContext) -> None:
        print(f"[INFO] [launch.user]: {perform(self.msg, context)}", flush=True)


class SetEnvironmentVariable(Action):
    def __init__(self, name: Any, value: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name, self.value = name, value

    def execute(self, context: LaunchContext) -> None:
        context.environment[perform(self.name, context)] = perform(self.value, context)


class Shutdown(Action):
    """Executed: stops the launch. As a Node/ExecuteProcess on_exit: marks it required."""

    def __init__(self, *, reason: Any = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def execute(self, context: LaunchContext) -> None:
        context.shutdown_reason = perform(self.reason, context) or "Shutdown action"


class GroupAction(Action):
    """Scoped (the default): launch configurations and environment set inside stay inside."""

    def __init__(self, actions: Iterable[Any], *, scoped: bool = True, forwarding: bool = True,
                 launch_configurations: dict[Any, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entities = list(actions)
        self.scoped = scoped
        self.forwarding = forwarding
        self.launch_configurations = launch_configurations or {}

    def describe_sub_entities(self) -> list[Any]:
        return self.entities

    def execute(self, context: LaunchContext) -> None:
        if not self.scoped:
            for key, value in self.launch_configurations.items():
                context.launch_configurations[perform(key, context)] = perform(value, context)
            run_entities(self.entities, context)
            return
        inner = LaunchContext(context.launch_configurations if self.forwarding else {})
        inner.environment = dict(context.environment)
        inner.params_dir = context.params_dir
        for key, value in self.launch_configurations.items():
            inner.launch_configurations[perform(key, context)] = perform(value, context)
        run_entities(self.entities, inner)
        context.processes.extend(inner.processes)
        context.shutdown_reason = context.shutdown_reason or inner.shutdown_reason


class OpaqueFunction(Action):
    def __init__(self, *, function: Callable[..., Any], args: Iterable[Any] | None = None,
                 kwargs: dict[str, Any] | None = None, **action_kwargs: Any) -> None:
        super().__init__(**action_kwargs)
        self.function = function
        self.args = list(args or [])
        self.kwargs = dict(kwargs or {})

    def execute(self, context: LaunchContext) -> list[Any]:
        return list(self.function(context, *self.args, **self.kwargs) or [])


def _check_on_exit(on_exit: Any, owner: str) -> bool:
    if on_exit is None:
        return False
    actions = on_exit if isinstance(on_exit, (list, tuple)) else [on_exit]
    if all(isinstance(a, Shutdown) for a in actions) and actions:
        return True
    raise unsupported(f"{owner}(on_exit=...) other than launch.actions.Shutdown()")


class ExecuteProcess(Action):
    def __init__(self, *, cmd: Iterable[Any], name: Any = None, cwd: Any = None,
                 additional_env: dict[Any, Any] | None = None, output: Any = "screen",
                 respawn: Any = False, respawn_delay: float | None = None,
                 on_exit: Any = None, shell: bool = False, emulate_tty: bool = False,
                 sigterm_timeout: Any = None, sigkill_timeout: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if shell or cwd is not None:
            raise unsupported("ExecuteProcess(shell=True or cwd=...)")
        self.cmd = list(cmd)
        self.name = name
        self.additional_env = additional_env or {}
        self.respawn = respawn
        self.respawn_delay = respawn_delay or 0.0
        self.required = _check_on_exit(on_exit, type(self).__name__)

    def command(self, context: LaunchContext) -> list[str]:
        return [perform(part, context) for part in self.cmd]

    def default_name(self, context: LaunchContext, cmd: list[str]) -> str:
        return Path(cmd[0]).name

    def execute(self, context: LaunchContext) -> None:
        cmd = self.command(context)
        name = perform(self.name, context) if self.name is not None else \
            self.default_name(context, cmd)
        env = dict(context.environment)
        env.update({perform(k, context): perform(v, context)
                    for k, v in self.additional_env.items()})
        respawn = self.respawn if isinstance(self.respawn, bool) else \
            truth(perform(self.respawn, context), "respawn")
        context.processes.append(ProcessSpec(name=name, cmd=cmd, env=env,
                                             required=self.required, respawn=respawn,
                                             respawn_delay=float(self.respawn_delay)))
