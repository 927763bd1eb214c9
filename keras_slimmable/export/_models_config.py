"""`models.config`, TF Serving's `ModelServerConfig` in protobuf text format.

Written here without the `tensorflow-serving-api` messages (not a runtime
dependency of this package): every string is escaped with protobuf's own
text-format escaping, so a path holding `"` or `\\` stays one string.
"""

import re

from google.protobuf import text_encoding

# An entry as `format_models_config` writes it.
_ENTRY = re.compile(
    r'config \{\s*name: "(?P<name>[^"\\]*)"\s*'
    r'base_path: "(?P<base_path>(?:[^"\\]|\\.)*)"\s*'
    r'model_platform: "tensorflow"\s*'
    r"model_version_policy \{\s*specific \{\s*versions: (?P<version>\d+)"
)


def quote(text):
    """`text` as a protobuf text-format string literal, quotes included."""
    return '"' + text_encoding.CEscape(text, as_utf8=True) + '"'


def format_models_config(entries):
    """The text of a `ModelServerConfig` serving `entries`.

    Args:
        entries: `(name, base_path, version)` tuples. Each model is pinned
            to `version` (`model_version_policy { specific { ... } }`), so
            a version folder published early changes nothing a server
            serves until `models.config` names it.
    """
    lines = ["model_config_list {"]
    for name, base_path, version in entries:
        lines += [
            "  config {",
            f"    name: {quote(name)}",
            f"    base_path: {quote(base_path)}",
            '    model_platform: "tensorflow"',
            "    model_version_policy {",
            "      specific {",
            f"        versions: {int(version)}",
            "      }",
            "    }",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def pinned_versions(text):
    """`{name: version}` of the entries of a `models.config` written here."""
    return {
        match["name"]: int(match["version"]) for match in _ENTRY.finditer(text)
    }
