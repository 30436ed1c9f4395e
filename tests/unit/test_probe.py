"""Which port the reachability probe knocks on."""

import pytest

from sersyncpy.probe import ssh_port


@pytest.mark.parametrize("rsh, port", [
    ("ssh", 22), ("ssh -p 2222", 2222), ("ssh -p2222 -i k", 2222),
    ("ssh -o Port=2200", 2200), ("ssh -oPort=2201", 2201), ("ssh -i '/a b' -p 7", 7),
    ("ssh -p", 22), ("ssh 'unclosed", 22),
])
def test_the_probe_uses_the_port_of_the_ssh_command(rsh, port):
    assert ssh_port(rsh) == port
