"""The two manifests a plan compares: the deployed release's (from helm's storage Secret, bounded) and the
desired one (``helm template`` of the chart the action would apply, offline: no cluster access).

Both run off the event loop; values go to helm in a private temporary file, never on a command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import yaml

from helmops.helm.driver import ReleaseSpec
from helmops.reconcile.storage import BadRelease, decode_release

#: the most bytes of ``helm template`` output read (a tenant's chart renders whatever it likes).
MAX_MANIFEST = 8 * 1024 * 1024
TEMPLATE_TIMEOUT = 60.0


async def deployed_record(core: Any, namespace: str, name: str, revision: int) -> dict[str, Any] | None:
    """The release record of one revision (None when unreadable): values, manifest and chart metadata."""
    if core is None or revision <= 0:
        return None
    try:
        secret = await core.read_namespaced_secret(f"sh.helm.release.v1.{name}.v{revision}", namespace)
    except Exception:
        return None
    raw = (secret.data or {}).get("release")
    if not raw:
        return None
    try:
        return await asyncio.to_thread(decode_release, raw)
    except BadRelease:
        return None


def chart_name(path: Path) -> str:
    """``name`` from the archive's Chart.yaml ("" when unreadable). Blocking; reads at most 64 KiB."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.isfile() and member.name.count("/") == 1 and member.name.endswith("/Chart.yaml"):
                    f = tar.extractfile(member)
                    if f is None or member.size > 65536:
                        return ""
                    meta = yaml.safe_load(f.read(65536))
                    return str(meta.get("name") or "") if isinstance(meta, dict) else ""
    except (OSError, tarfile.TarError, yaml.YAMLError):
        return ""
    return ""


class HelmTemplate:
    """``helm template`` with the helm executable the controller runs."""

    def __init__(self, executable: str = "helm") -> None:
        self.executable = executable

    async def render(self, spec: ReleaseSpec) -> str | None:
        """The desired manifest; None when helm fails (the plan then says so; helm's text is not shown, as it
        may quote values)."""
        work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="helmops-plan-"))
        try:
            values = work / "values.yaml"
            text = yaml.safe_dump(dict(spec.values), sort_keys=True)
            await asyncio.to_thread(_write_private, values, text)
            args = [self.executable, "template", spec.name, str(spec.chart_path), "--namespace", spec.namespace,
                    "--values", str(values), "--no-hooks", "--skip-tests", "--is-upgrade"]  # fmt: skip
            if spec.skip_schema_validation:
                args.append("--skip-schema-validation")
            env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work)}
            env.update({f"HELM_{k}_HOME": str(work / k.lower()) for k in ("CACHE", "CONFIG", "DATA")})
            proc = await asyncio.create_subprocess_exec(
                *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env, cwd=work
            )
            try:
                assert proc.stdout is not None
                out = await asyncio.wait_for(proc.stdout.read(MAX_MANIFEST + 1), TEMPLATE_TIMEOUT)
                await asyncio.wait_for(proc.wait(), TEMPLATE_TIMEOUT)
            finally:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            if proc.returncode != 0 or len(out) > MAX_MANIFEST:
                return None
            return out.decode("utf-8", "replace")
        except (OSError, TimeoutError):
            return None
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


__all__ = ["HelmTemplate", "chart_name", "deployed_record"]
