"""Reads template.yaml (with CloudFormation short-form tags) and resolves what the local stack
needs: functions with their handler, code, layers and environment; tables; queues; parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        doc = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with CFN tags
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a template: not a YAML mapping")
    return doc


@dataclass
class FunctionDef:
    logical_id: str
    code_uri: Path
    handler: str
    layers: list[Path]
    environment: dict[str, Any]
    timeout: int
    memory: int
    events: dict[str, Any] = field(default_factory=dict)
    # How Lambda treats its asynchronous invocations (retries, OnFailure destination).
    event_invoke_config: dict[str, Any] = field(default_factory=dict)


class Template:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.root = path.parent
        self.doc = load_template(path)
        self.resources: dict[str, Any] = self.doc.get("Resources", {})
        self.parameters: dict[str, Any] = self.doc.get("Parameters", {})
        self.globals: dict[str, Any] = self.doc.get("Globals", {}).get("Function", {})

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.resources.items() if res.get("Type") == kind}

    def conditions(self, parameters: dict[str, str]) -> dict[str, bool]:
        return evaluate_conditions(self.doc, parameters)

    def parameter_defaults(self) -> dict[str, str]:
        return {name: str(p.get("Default", "")) for name, p in self.parameters.items()}

    def function(self, logical_id: str) -> FunctionDef:
        resource = self.resources.get(logical_id)
        if not resource or resource.get("Type") != "AWS::Serverless::Function":
            known = ", ".join(sorted(self.of_type("AWS::Serverless::Function")))
            raise KeyError(f"{logical_id} is not a function of {self.path.name} (functions: {known})")
        props = resource.get("Properties", {})
        layers = []
        for layer in props.get("Layers", self.globals.get("Layers", [])):
            ref = layer.get("Ref") if isinstance(layer, dict) else None
            if ref and ref in self.resources:
                layers.append(self.root / self.resources[ref]["Properties"]["ContentUri"])
        env = dict(self.globals.get("Environment", {}).get("Variables", {}))
        env.update(props.get("Environment", {}).get("Variables", {}))
        return FunctionDef(
            logical_id=logical_id,
            code_uri=self.root / props["CodeUri"],
            handler=props.get("Handler", self.globals.get("Handler", "app.handler")),
            layers=layers,
            environment=env,
            timeout=int(props.get("Timeout", self.globals.get("Timeout", 3))),
            memory=int(props.get("MemorySize", self.globals.get("MemorySize", 128))),
            events=props.get("Events", {}),
            event_invoke_config=props.get("EventInvokeConfig", {}),
        )

    def functions(self) -> list[str]:
        return sorted(self.of_type("AWS::Serverless::Function"))

    def queue_of(self, function_id: str) -> str | None:
        """Logical id of the SQS queue that feeds a function."""
        for event in self.function(function_id).events.values():
            if event.get("Type") == "SQS":
                queue = event["Properties"]["Queue"]
                if isinstance(queue, dict) and "Fn::GetAtt" in queue:
                    return str(queue["Fn::GetAtt"][0])
        return None

    def stream_of(self, function_id: str) -> tuple[str, dict[str, Any]] | None:
        """(logical id of the table, the event's properties) of a function's DynamoDB stream event."""
        for event in self.function(function_id).events.values():
            if event.get("Type") == "DynamoDB":
                properties: dict[str, Any] = event["Properties"]
                stream = properties["Stream"]
                if isinstance(stream, dict) and "Fn::GetAtt" in stream:
                    return str(stream["Fn::GetAtt"][0]), properties
        return None

    def on_failure_queue_of(self, function_id: str) -> str | None:
        """Logical id of the SQS queue a function's failed asynchronous invocations go to."""
        invoke_config = self.function(function_id).event_invoke_config
        on_failure = invoke_config.get("DestinationConfig", {}).get("OnFailure") or {}
        destination = on_failure.get("Destination")
        if on_failure.get("Type") == "SQS" and isinstance(destination, dict) and "Fn::GetAtt" in destination:
            return str(destination["Fn::GetAtt"][0])
        return None

    def dead_letter_queue_of(self, queue_id: str) -> str | None:
        policy = self.resources[queue_id].get("Properties", {}).get("RedrivePolicy") or {}
        target = policy.get("deadLetterTargetArn")
        if isinstance(target, dict) and "Fn::GetAtt" in target:
            return str(target["Fn::GetAtt"][0])
        return None


_SUB = re.compile(r"\$\{([^}]+)\}")


NO_VALUE = object()  # AWS::NoValue: the enclosing property is left out


def evaluate_conditions(doc: dict[str, Any], parameters: dict[str, str]) -> dict[str, bool]:
    """The template's Conditions for these parameter values (Fn::Equals/Not/And/Or/Condition)."""
    definitions: dict[str, Any] = doc.get("Conditions", {})
    results: dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            return parameters.get(node["Ref"], "")
        return node

    def holds(node: Any) -> bool:
        if isinstance(node, dict):
            if "Fn::Equals" in node:
                left, right = node["Fn::Equals"]
                return str(value(left)) == str(value(right))
            if "Fn::Not" in node:
                return not holds(node["Fn::Not"][0])
            if "Fn::And" in node:
                return all(holds(item) for item in node["Fn::And"])
            if "Fn::Or" in node:
                return any(holds(item) for item in node["Fn::Or"])
            if "Condition" in node:
                return condition(node["Condition"])
        raise ValueError(f"unsupported condition: {node!r}")

    def condition(name: str) -> bool:
        if name not in results:
            results[name] = holds(definitions[name])
        return results[name]

    for name in definitions:
        condition(name)
    return results


class Resolver:
    """Resolves Ref / GetAtt / Sub / If / Select / Split / Join against the local stack's physical names."""

    def __init__(
        self,
        refs: dict[str, str],
        attrs: dict[tuple[str, str], str],
        pseudo: dict[str, str],
        conditions: dict[str, bool] | None = None,
    ) -> None:
        self.refs = refs
        self.attrs = attrs
        self.pseudo = pseudo
        self.conditions = conditions or {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            if "Ref" in value:
                name = value["Ref"]
                if name == "AWS::NoValue":
                    return NO_VALUE
                return self.pseudo.get(name) or self.refs.get(name, name)
            if "Fn::If" in value:
                condition, when_true, when_false = value["Fn::If"]
                return self(when_true if self.conditions.get(condition, False) else when_false)
            if "Fn::GetAtt" in value:
                logical, attr = value["Fn::GetAtt"]
                return self.attrs.get((logical, attr), f"{logical}.{attr}")
            if "Fn::Sub" in value:
                if isinstance(value["Fn::Sub"], str):
                    text, variables = value["Fn::Sub"], {}
                else:
                    text, variables = value["Fn::Sub"][0], self(value["Fn::Sub"][1])

                def substitute(match: re.Match[str]) -> str:
                    name = match.group(1)
                    return str(variables[name] if name in variables else self._sub_name(name))

                return _SUB.sub(substitute, text)
            if "Fn::Select" in value:
                index, items = value["Fn::Select"]
                return self(items)[int(index)]
            if "Fn::Split" in value:
                separator, text = value["Fn::Split"]
                return str(self(text)).split(str(separator))
            if "Fn::Join" in value:
                separator, items = value["Fn::Join"]
                return str(separator).join(str(item) for item in self(items))
            resolved = {k: self(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [item for item in (self(v) for v in value) if item is not NO_VALUE]
        return value

    def _sub_name(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        if "." in name:
            logical, attr = name.split(".", 1)
            return self.attrs.get((logical, attr), name)
        return self.refs.get(name, name)
