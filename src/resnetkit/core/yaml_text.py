"""Reading YAML that people write: PyYAML's safe loader, except that a key given twice in one
mapping is an error. The plain loader keeps the last value silently, so a recipe could say
`lr: 0.1` and train at a second `lr` further down, or a spec name one width and build another.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["load_yaml"]


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` is a merge; a key after it may override (legal YAML)
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:
                continue  # an unhashable key: the parent reports it as a YAML error
            if repeated:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice (again on line {line}); keep one"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """The data in `text`, as `yaml.safe_load` reads it, but a repeated key raises a
    `yaml.YAMLError` naming the key and its second line."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
