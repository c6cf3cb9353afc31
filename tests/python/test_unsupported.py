"""What hutch has no backend for yet raises a clear error naming the missing
capability (never a silent no-op): Volume, the
function decorator, volume mounts; and what the server refuses (tunnels,
gpus without their plugins) surfaces with the server's message."""
import grpc
import pytest

import hutch
from hutch import CapabilityMissingError, Container, UnimplementedError, Volume, function


def _missing(capability, fn, *args, **kwargs):
    with pytest.raises(CapabilityMissingError) as e:
        fn(*args, **kwargs)
    err = e.value
    assert err.capability == capability
    assert "capability `%s` missing" % capability in str(err)
    assert "not available in this hutch yet" in str(err)
    # Part of the hierarchy: caught as UnimplementedError / NotImplementedError too.
    assert isinstance(err, UnimplementedError) and isinstance(err, NotImplementedError)
    assert err.code == grpc.StatusCode.UNIMPLEMENTED
    return err


def test_volume_and_function_raise_naming_the_capability():
    assert "Volume('data')" in str(_missing("volumes", Volume, "data"))
    _missing("volumes", Volume.from_name, "data", create_if_missing=True)
    _missing("volumes", Volume.ephemeral)
    _missing("volumes", Volume.list)
    _missing("volumes", Volume.delete, "data")
    # The decorator, bare and with arguments, refuses where it is applied.
    with pytest.raises(CapabilityMissingError) as e:
        @function
        def f(x):
            return x
    assert e.value.capability == "functions" and "@function on" in str(e.value)
    with pytest.raises(CapabilityMissingError) as e:
        @function(cpu="2", memory="4Gi", image=hutch.Image.debian_slim(), timeout="10m")
        def g(x):
            return x
    assert e.value.capability == "functions"


def test_volume_mounts_refuse_at_run(client):
    c = Container(client=client).mount_volume("data", "/data").mount_volume("cache", "/cache")
    assert c.volumes == {"/data": "data", "/cache": "cache"}
    err = _missing("volumes", c.run)
    assert "volume `data` at /data" in str(err)
    assert c.state == "not started" and client.list() == []
    _missing("volumes", client.create, volumes={"/data": "data"})
    with pytest.raises(hutch.InvalidArgumentError):
        Container().mount_volume("data", "relative")


def test_what_the_server_refuses_carries_its_message(client):
    with pytest.raises(UnimplementedError) as e:
        client.create(tunnels=["web"])
    assert "tunnels need a tunnel network plugin" in str(e.value)
    with pytest.raises(UnimplementedError) as e:
        Container(gpu="h100:1", client=client).run()
    assert "no accelerator plugin is configured" in str(e.value)
    with pytest.raises(UnimplementedError) as e:
        client.create(gpu=1)
    assert client.list() == []
