#!/usr/bin/env python3
"""Helpers of android_demo/check_app.sh (standard library only; Python 3.8+).

  app_check.py wellformed FILE...          parse every XML file; print file:line:col on the first error
  app_check.py gradle-facts DEMO_DIR       namespace, SDK levels and versions from the Gradle files (shell lines)
  app_check.py manifest SRC OUT PACKAGE    the manifest as AGP's merger hands it to aapt2: package attribute added
  app_check.py crosscheck DEMO_DIR CLASSES every <activity> has a compiled Activity class and every Activity
                                           source is declared; each backend's RUNTIME names the AAR version of the
                                           toml; src/main imports no runtime (org.pytorch) package
  app_check.py apt-source SUITE            a one-line apt source for SUITE from the host's own apt configuration
"""
from __future__ import annotations

import glob
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ANDROID_NS = "http://schemas.android.com/apk/res/android"


def fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def wellformed(files: list[str]) -> None:
    bad = 0
    for f in files:
        try:
            ET.parse(f)
        except ET.ParseError as exc:
            line, col = exc.position
            print(f"{f}:{line}:{col}: error: XML not well-formed: {exc}", file=sys.stderr)
            bad += 1
    if bad:
        sys.exit(1)
    print(f"{len(files)} XML files well-formed")


def _kts_string(text: str, key: str, path: Path) -> str:
    m = re.search(rf'^\s*{key}\s*=\s*"([^"]+)"', text, re.M)
    if not m:
        fail(f"{path}: no {key} = \"...\"")
    return m.group(1)


def _kts_int(text: str, key: str, path: Path) -> int:
    m = re.search(rf"^\s*{key}\s*=\s*(\d+)\s*$", text, re.M)
    if not m:
        fail(f"{path}: no {key} = <int>")
    return int(m.group(1))


def _toml_versions(path: Path) -> dict[str, str]:
    """The [versions] table of the version catalog (flat string values only, which is all it holds)."""
    versions, section = {}, None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section == "versions" and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip().strip('"')
    return versions


def gradle_facts(demo: str) -> None:
    demo_dir = Path(demo)
    app_gradle = demo_dir / "app" / "build.gradle.kts"
    toml = demo_dir / "gradle" / "libs.versions.toml"
    text = app_gradle.read_text(encoding="utf-8")
    versions = _toml_versions(toml)
    for key in ("minSdk", "targetSdk", "compileSdk", "pytorchLite", "executorch", "agp"):
        if key not in versions:
            fail(f"{toml}: [versions] has no {key}")
    facts = {
        "NAMESPACE": _kts_string(text, "namespace", app_gradle),
        "APPLICATION_ID": _kts_string(text, "applicationId", app_gradle),
        "VERSION_CODE": str(_kts_int(text, "versionCode", app_gradle)),
        "VERSION_NAME": _kts_string(text, "versionName", app_gradle),
        "MIN_SDK": versions["minSdk"], "TARGET_SDK": versions["targetSdk"], "COMPILE_SDK": versions["compileSdk"],
        "PYTORCH_LITE": versions["pytorchLite"], "AGP": versions["agp"],
    }
    for key, value in facts.items():
        if not re.fullmatch(r"[A-Za-z0-9._+-]+", value):
            fail(f"gradle fact {key}={value!r} has unexpected characters")
        print(f"{key}={value}")


def merged_manifest(src: str, out: str, package: str) -> None:
    """AGP 8 takes the package from `namespace` and refuses a package attribute in the source manifest.

    The attribute is added textually inside the <manifest> start tag, so line numbers in aapt2's messages still
    point at the source file's lines.
    """
    text = Path(src).read_text(encoding="utf-8")
    root = ET.fromstring(text)
    if root.tag != "manifest":
        fail(f"{src}: root element is <{root.tag}>, not <manifest>")
    if "package" in root.attrib:
        fail(f"{src}: has package=\"{root.attrib['package']}\"; AGP 8 takes it from namespace in app/build.gradle.kts "
             "and rejects the attribute: remove it")
    if root.find("uses-sdk") is not None:
        fail(f"{src}: declares <uses-sdk>; AGP 8 rejects it: minSdk/targetSdk live in gradle/libs.versions.toml")
    new, n = re.subn(r"<manifest(\s)", rf'<manifest package="{package}"\1', text, count=1)
    if n != 1:
        fail(f"{src}: no <manifest start tag found")
    Path(out).write_text(new, encoding="utf-8")


def crosscheck(demo: str, classes: str) -> None:
    demo_dir, classes_dir = Path(demo), Path(classes)
    manifest = demo_dir / "app" / "src" / "main" / "AndroidManifest.xml"
    app_gradle = (demo_dir / "app" / "build.gradle.kts").read_text(encoding="utf-8")
    package = _kts_string(app_gradle, "namespace", demo_dir / "app" / "build.gradle.kts")
    root = ET.parse(manifest).getroot()
    problems, declared = [], set()
    for act in root.iter("activity"):
        name = act.get(f"{{{ANDROID_NS}}}name")
        if not name:
            problems.append(f"{manifest}: <activity> without android:name")
            continue
        fqcn = package + name if name.startswith(".") else name
        declared.add(fqcn)
        if not (classes_dir / (fqcn.replace(".", "/") + ".class")).is_file():
            problems.append(f"{manifest}: activity {name} -> {fqcn}: no such compiled class")
        has_filter = act.find("intent-filter") is not None
        if has_filter and act.get(f"{{{ANDROID_NS}}}exported") is None:
            problems.append(f"{manifest}: activity {name} has an intent-filter but no android:exported "
                            "(required from targetSdk 31: the install fails)")
    src_root = demo_dir / "app" / "src" / "main" / "java"
    for java in sorted(src_root.rglob("*.java")):
        text = java.read_text(encoding="utf-8")
        if re.search(r"\bclass\s+\w+\s+extends\s+(android\.app\.)?Activity\b", text):
            fqcn = ".".join(java.relative_to(src_root).with_suffix("").parts)
            if fqcn not in declared:
                problems.append(f"{java}: {fqcn} extends Activity but is not declared in {manifest.name} "
                                "(startActivity would throw ActivityNotFoundException)")
    for java in sorted(src_root.rglob("*.java")):
        hit = re.search(r"^import\s+(static\s+)?org\.pytorch\.", java.read_text(encoding="utf-8"), re.M)
        if hit:
            problems.append(f"{java}: imports org.pytorch (a runtime); src/main is shared by both flavors: "
                            "go through org.clipkit.core.Backend, the runtime lives in src/<flavor>/java")
    versions = _toml_versions(demo_dir / "gradle" / "libs.versions.toml")
    # (flavor, backend class, artifact named in RUNTIME, toml version key)
    for flavor, cls, artifact, key in (("lite", "LiteBackend", "pytorch_android_lite", "pytorchLite"),
                                       ("executorch", "ExecutorchBackend", "executorch-android", "executorch")):
        src = demo_dir / "app" / "src" / flavor / "java" / "org" / "clipkit" / "demo" / f"{cls}.java"
        text = src.read_text(encoding="utf-8") if src.is_file() else ""
        m = re.search(rf'RUNTIME\s*=\s*"{re.escape(artifact)} ([^"]+)"', text)
        if not m or m.group(1) != versions.get(key):
            problems.append(f"{src}: RUNTIME names {artifact} {m.group(1) if m else '?'}, "
                            f"gradle/libs.versions.toml {key} is {versions.get(key)}")
    for gradle_file in [demo_dir / "build.gradle.kts", demo_dir / "settings.gradle.kts",
                        *sorted(demo_dir.glob("*/build.gradle.kts"))]:
        if "stubs" in gradle_file.read_text(encoding="utf-8"):
            problems.append(f"{gradle_file}: mentions the compile-only stubs; they must never be built into the app")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{len(declared)} activities declared and compiled; runtimes pytorch_android_lite {versions.get('pytorchLite')} "
          f"and executorch-android {versions.get('executorch')} consistent")


def _os_codename() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ""


def _stanzas() -> list[dict[str, str]]:
    """deb822 stanzas of /etc/apt/sources.list.d/*.sources, plus one-line entries, as {types, uris, suites, ...}."""
    out = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for block in re.split(r"\n\s*\n", Path(path).read_text(encoding="utf-8", errors="replace")):
            fields, key = {}, None
            for raw in block.splitlines():
                if raw.startswith("#") or not raw.strip():
                    continue
                if raw[0] in " \t" and key:
                    fields[key] += " " + raw.strip()
                    continue
                key, _, value = raw.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
            if fields.get("enabled", "yes").lower() != "no" and "uris" in fields:
                out.append(fields)
    one_line = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in one_line:
        if not os.path.isfile(path):
            continue
        for raw in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            m = re.match(r"^\s*(deb)\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$", raw)
            if not m:
                continue
            opts = {}
            for opt in (m.group(2) or "").strip(" []").split():
                k, _, v = opt.partition("=")
                opts[k.lower()] = v
            out.append({"types": "deb", "uris": m.group(3), "suites": m.group(4), "components": m.group(5),
                        "signed-by": opts.get("signed-by", "")})
    return out


def apt_source(suite: str) -> None:
    """Print `deb [signed-by=...] URI SUITE main`: the host's own Debian archive, only the suite swapped.

    Nothing host-specific is written anywhere in the repository: the URI comes from this machine's apt
    configuration every time.
    """
    codename = _os_codename()
    candidates = []
    for st in _stanzas():
        if "deb" not in st.get("types", "deb").split():
            continue
        suites = st.get("suites", "").split()
        # the release's main suite (bookworm), not -security / -updates / -backports, which live elsewhere
        rank = 0 if codename and codename in suites else 1 if any("-" not in s for s in suites) else None
        if rank is None:
            continue
        for uri in st["uris"].split():
            candidates.append((rank, uri.rstrip("/"), st.get("signed-by", "").split()))
    if not candidates:
        fail("no Debian archive found in /etc/apt/sources.list(.d): set CLIPKIT_ANDROID_JAR to an android.jar instead")
    candidates.sort(key=lambda c: c[0])
    _, uri, signed = candidates[0]
    opts = f"[signed-by={signed[0]}] " if signed and os.path.isfile(signed[0]) else ""
    print(f"deb {opts}{uri} {suite} main")


def main(argv: list[str]) -> None:
    if not argv:
        fail(__doc__)
    cmd, args = argv[0], argv[1:]
    if cmd == "wellformed" and args:
        wellformed(args)
    elif cmd == "gradle-facts" and len(args) == 1:
        gradle_facts(args[0])
    elif cmd == "manifest" and len(args) == 3:
        merged_manifest(*args)
    elif cmd == "crosscheck" and len(args) == 2:
        crosscheck(*args)
    elif cmd == "apt-source" and len(args) == 1:
        apt_source(args[0])
    else:
        fail(f"bad arguments: {' '.join(argv)}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
