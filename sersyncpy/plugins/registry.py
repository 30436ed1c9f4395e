"""The plugins by name, in one table: the names -m and <plugin name> accept, the reader of
each plugin's settings, and its class, imported only when the plugin is built. A new plugin
is a module, a settings class and reader (settings.py), and one row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sersyncpy.configxml import Element
from sersyncpy.plugins import Plugin
from sersyncpy.plugins.settings import (
    PluginSettings,
    read_cdn,
    read_command,
    read_http,
    read_socket,
)

PluginClass = Callable[..., Plugin]  # called with the plugin's own settings


@dataclass(frozen=True)
class Entry:
    read: Callable[[Element, bool], PluginSettings]  # (its <plugin>, -m alone) -> settings
    load: Callable[[], PluginClass]  # imports the plugin's module: not when only read


# Each class is imported when built, so that reading a config (config imports the names)
# loads no plugin's module, nor subprocess, http.client and ssl for plugins nobody runs.


def _command() -> PluginClass:
    from sersyncpy.plugins.command import CommandPlugin

    return CommandPlugin


def _socket() -> PluginClass:
    from sersyncpy.plugins.socket import SocketPlugin

    return SocketPlugin


def _cdn() -> PluginClass:
    from sersyncpy.plugins.refreshcdn import CdnPlugin

    return CdnPlugin


def _http() -> PluginClass:
    from sersyncpy.plugins.http import HttpPlugin

    return HttpPlugin


PLUGINS: dict[str, Entry] = {
    "command": Entry(read_command, _command),
    "socket": Entry(read_socket, _socket),
    "refreshCDN": Entry(read_cdn, _cdn),
    "http": Entry(read_http, _http),
}
NAMES = tuple(PLUGINS)  # as confxml.xml spells them, in sersync's order


def plugin_name(text: str) -> str:
    """A plugin's name, as the converters do it (<plugin name>, -m)."""
    if text not in PLUGINS:
        raise ValueError(f"unknown plugin, expected one of {', '.join(NAMES)}")
    return text


def read(name: str, plugin: Element, standalone: bool) -> PluginSettings:
    """The settings of plugin `name` from its <plugin> element; `standalone` (-m) also needs
    its watch directory. Raises configxml.Invalid."""
    return PLUGINS[name].read(plugin, standalone)


def build(name: str, settings: PluginSettings) -> Plugin:
    """The plugin called `name` (as in confxml.xml), ready to deliver."""
    if name not in PLUGINS:
        raise ValueError(f"unknown plugin {name!r}")
    return PLUGINS[name].load()(settings)
