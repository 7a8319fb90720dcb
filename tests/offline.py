"""A test's data folders and network cut off (a helper module, not a test module)."""
import dataclasses
import socket
from types import SimpleNamespace

from minivae import data


def isolate(tmp_path, monkeypatch, no_mirrors: bool = False) -> SimpleNamespace:
    """A fresh HOME, no XDG_CACHE_HOME / MINIVAE_DATA, a fake /usr/share/datasets, no network; with
    ``no_mirrors`` every data set's download mirrors point at a folder that does not exist."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("MINIVAE_DATA", raising=False)
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", tmp_path / "usr-share-datasets")
    if no_mirrors:
        offline_mirror = (tmp_path / "no-mirror").as_uri() + "/"
        for name, spec in list(data.DATASETS.items()):
            monkeypatch.setitem(data.DATASETS, name,
                                dataclasses.replace(spec, mirrors=(offline_mirror,)))

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    return SimpleNamespace(home=home)
