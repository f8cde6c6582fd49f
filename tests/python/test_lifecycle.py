"""Opening, closing and reopening; settings; fork safety; every error type."""

import os
import sys
from pathlib import Path

import pytest

from conftest import EngineFactory, postgres_urls, unique_tenant
from percolate_core import (
    BackendError,
    CryptoError,
    LockedError,
    MemoryEngine,
    PercolateError,
    ProviderType,
)


def test_data_survives_close_and_reopen(open_engine: EngineFactory) -> None:
    name = unique_tenant()
    memory = open_engine(name)
    note = memory.create_resource("durable", embedding=[0.6, 0.8], metadata={"k": "v"})
    other = memory.tenant(name)
    memory.close()
    assert memory.closed
    memory.close()  # idempotent
    with pytest.raises(PercolateError, match="closed"):
        memory.get_resource(note.id)
    with pytest.raises(PercolateError, match="closed"):
        other.get_resource(note.id)
    with pytest.raises(PercolateError, match="closed"):
        memory.list_tenants()
    # The store was released (RocksDB holds a lock on its directory while open).
    reopened = open_engine(name)
    got = reopened.get_resource(note.id)
    assert (got.content, got.metadata) == ("durable", {"k": "v"})
    assert reopened.search_resources([0.6, 0.8], k=1)[0].resource.id == note.id


def test_release_memory_keeps_the_engine_and_its_data(open_engine: EngineFactory) -> None:
    memory = open_engine(unique_tenant())
    notes = [memory.create_resource(f"n{i}", embedding=[float(i), 1.0]) for i in range(20)]
    memory.release_memory()
    assert memory.get_resource(notes[3].id).content == "n3"
    assert memory.search_resources([3.0, 1.0], k=1)[0].resource.id == notes[3].id
    later = memory.create_resource("after")
    memory.release_memory()
    assert memory.get_resource(later.id).content == "after"
    memory.close()
    with pytest.raises(PercolateError, match="closed"):
        memory.release_memory()


def test_an_engine_is_a_context_manager(open_engine: EngineFactory) -> None:
    with open_engine(unique_tenant()) as memory:
        memory.create_resource("inside")
    assert memory.closed


def test_from_settings_reads_the_percolate_environment(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique_tenant()
    monkeypatch.setenv("PERCOLATE_STORAGE_PROVIDER", provider)
    if provider == "rocksdb":
        monkeypatch.setenv("PERCOLATE_ROCKSDB_PATH", str(tmp_path / "from-env"))
    else:
        url, admin = postgres_urls()
        monkeypatch.setenv("PERCOLATE_POSTGRES_URL", url)
        monkeypatch.setenv("PERCOLATE_POSTGRES_ADMIN_URL", admin)
    with MemoryEngine.from_settings(tenant_id=name) as memory:
        assert memory.provider is ProviderType(provider)
        memory.create_resource("configured")
        assert name in memory.list_tenants()
        if provider == "postgres":
            memory.delete_tenant(name)
    if provider == "rocksdb":
        assert (tmp_path / "from-env").is_dir()


def test_settings_from_a_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("PERCOLATE_") and not key.startswith("PERCOLATE_TEST_"):
            monkeypatch.delenv(key)
    config = tmp_path / "percolate.toml"
    config.write_text(f'storage_provider = "rocksdb"\nrocksdb_path = "{tmp_path / "toml"}"\n')
    with MemoryEngine.from_settings(config, tenant_id="from-toml") as memory:
        assert memory.list_tenants() == ["from-toml"]
    with pytest.raises(Exception, match="does not exist"):
        MemoryEngine.from_settings(tmp_path / "missing.toml")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
# Python 3.12+ warns that forking a threaded process is risky: the risk is what is tested.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_cannot_use_the_parents_engine(open_engine: EngineFactory) -> None:
    memory = open_engine(unique_tenant())
    note = memory.create_resource("parent's")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what the call raised, then leave without cleanup
        os.close(read)
        try:
            memory.get_resource(note.id)
            message = b"no error"
        except PercolateError as error:
            message = str(error).encode()
        except BaseException as error:  # noqa: BLE001 - anything else is a failure too
            message = repr(error).encode()
        os.write(write, message)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        reported = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert "forked process" in reported, reported
    # The parent's engine is untouched.
    assert memory.get_resource(note.id).content == "parent's"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
# Python 3.12+ warns that forking a threaded process is risky: the risk is what is tested.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_can_open_its_own_engine(tmp_path: Path) -> None:
    parent = MemoryEngine("rocksdb", str(tmp_path / "parent"), "p")
    parent.create_resource("made before the fork", embedding=[1.0, 0.0])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            with MemoryEngine("rocksdb", str(tmp_path / "child"), "c") as child:
                note = child.create_resource("child's", embedding=[0.0, 1.0])
                hits = child.search_resources([0.0, 1.0], k=1)
                message = b"ok" if hits[0].resource.id == note.id else b"wrong hit"
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            message = repr(error).encode()
        os.write(write, message)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        reported = pipe.read().decode()
    os.waitpid(pid, 0)
    assert reported == "ok"
    assert parent.search_resources([1.0, 0.0], k=1)[0].resource.content == "made before the fork"
    parent.close()


def test_an_encrypted_tenant_needs_its_key(tmp_path: Path) -> None:
    store = str(tmp_path / "sealed")
    with MemoryEngine("rocksdb", store, "vault", master_key="correct horse battery staple") as m:
        m.create_resource("secret")
    with pytest.raises(CryptoError):
        MemoryEngine("rocksdb", store, "vault")
    with pytest.raises(CryptoError):
        MemoryEngine("rocksdb", store, "vault", master_key="wrong passphrase entirely")
    with MemoryEngine("rocksdb", store, "vault", master_key="correct horse battery staple") as m:
        assert [r.content for r in m.scan("resource")] == ["secret"]  # type: ignore[union-attr]


def test_an_unreachable_server_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="cannot connect"):
        MemoryEngine("postgres", "postgres://nobody:nothing@127.0.0.1:1/percolate", "t")


def test_a_store_path_that_is_a_file_is_a_backend_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BackendError):
        MemoryEngine("rocksdb", str(blocker / "store"), "t")


def test_a_store_another_process_writes_is_a_locked_error(tmp_path: Path) -> None:
    import subprocess

    store = str(tmp_path / "shared")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from percolate_core import MemoryEngine\n"
            f"m = MemoryEngine('rocksdb', {store!r}, 't')\n"
            "m.create_resource('kept')\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n"
            "m.close()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(LockedError, match="store is locked") as raised:
            MemoryEngine("rocksdb", store, "t")
        assert isinstance(raised.value, BackendError)
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    with MemoryEngine("rocksdb", store, "t") as again:
        assert [r.content for r in again.scan("resource")] == ["kept"]  # type: ignore[union-attr]


def test_the_module_is_typed_and_versioned() -> None:
    import percolate_core

    package = Path(percolate_core.__file__).parent
    assert (package / "py.typed").exists()
    assert (package / "__init__.pyi").exists()
    assert percolate_core.__version__
    assert sys.version_info >= (3, 9)
