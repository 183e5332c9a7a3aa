//! Kernel symbols and types from files (`--btf`, `--system-map`, `--vmlinux`) for a guest
//! whose own BTF cannot be read from memory.
//!
//! The guest is the cached QEMU fixture (the host's Debian kernel, see
//! `vmark_host::introspect::fixture`); a copy of its dump has the kernel's in-memory
//! `.BTF` bytes zeroed, which is what a kernel built without usable BTF looks like to
//! vmark. The files are made once per run from the same kernel's `/boot/vmlinuz-<release>`:
//! the vmlinux inside it (decompressed by sniffing xz/zstd/gzip), its `.BTF` section
//! (`objcopy`), and a link-time System.map (Debian's `/boot/System.map-*` is a placeholder;
//! the real one is in the 850 MB `-dbg` package, so the map is the image's own kallsyms
//! tables at link-time addresses). Every answer is compared with the untouched dump's.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use vmark_host::introspect::fixture::{self, Fixture};
use vmark_tests::guest_lists::GuestPs;
use vmark_tests::kmod::{run_vmark as run, vmark_json};

/// The fixture and the files made from its kernel.
struct Sources {
    fixture: &'static Fixture,
    /// The dump with the kernel's BTF zeroed.
    no_btf: PathBuf,
    /// The vmlinux inside the vmlinuz (stripped, with `.BTF`).
    vmlinux: PathBuf,
    /// Its `.BTF` section.
    blob: PathBuf,
    /// A link-time `System.map-<release>`.
    system_map: PathBuf,
}

fn sources() -> &'static Sources {
    static S: OnceLock<Result<Sources, String>> = OnceLock::new();
    S.get_or_init(make_sources)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn make_sources() -> Result<Sources, String> {
    let fixture = fixture::plain();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("type_sources");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let image = fixture::Kernel::host()?.image;
    let vmlinux = dir.join("vmlinux");
    std::fs::write(&vmlinux, decompress_vmlinuz(&image)?).map_err(|e| e.to_string())?;
    let blob = dir.join("vmlinux.btf");
    let out = Command::new("objcopy")
        .arg(format!("--dump-section=.BTF={}", blob.display()))
        .arg(&vmlinux)
        .arg(dir.join("objcopy.out"))
        .output()
        .map_err(|e| format!("objcopy (binutils, tests/install-deps.sh): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "objcopy --dump-section=.BTF: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let btf = std::fs::read(&blob).map_err(|e| e.to_string())?;
    // The dump with the kernel's BTF (one physically contiguous copy) zeroed.
    let mut dump = std::fs::read(&fixture.dump).map_err(|e| e.to_string())?;
    let at = find(&dump, &btf[..btf.len().min(4096)])
        .ok_or("the kernel image's .BTF is not in the dump's memory")?;
    dump[at..at + btf.len()].fill(0);
    let no_btf = dir.join("no-btf.elf");
    std::fs::write(&no_btf, &dump).map_err(|e| e.to_string())?;
    drop(dump);
    // A link-time System.map of the image, named as Debian names it.
    let (link, _) = vmark_host::introspect::files::vmlinux(&vmlinux).map_err(|e| e.to_string())?;
    let system_map = dir.join(format!("System.map-{}", fixture.release));
    let mut text = String::new();
    for s in link.symbols.iter() {
        text.push_str(&format!("{:016x} {} {}\n", s.addr, s.kind, s.name));
    }
    std::fs::write(&system_map, text).map_err(|e| e.to_string())?;
    Ok(Sources {
        fixture,
        no_btf,
        vmlinux,
        blob,
        system_map,
    })
}

/// The ELF inside a bzImage: the first xz, zstd or gzip stream that decompresses to one.
fn decompress_vmlinuz(image: &Path) -> Result<Vec<u8>, String> {
    let data = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let formats: [(&[u8], &str); 3] = [
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x1f\x8b\x08", "gzip"),
    ];
    for (magic, tool) in formats {
        let Some(at) = find(&data, magic) else {
            continue;
        };
        let mut child = Command::new(tool)
            .args(["-dcq"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{tool}: {e}"))?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let tail = data[at..].to_vec();
        // Fed from a thread: the tool's output fills its pipe while it reads.
        let feeder = std::thread::spawn(move || stdin.write_all(&tail));
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let _ = feeder.join();
        // Trailing bytes after the stream make the tool complain; the ELF is complete.
        if out.stdout.starts_with(b"\x7fELF") {
            return Ok(out.stdout);
        }
    }
    Err(format!(
        "{}: no xz, zstd or gzip stream holds an ELF vmlinux",
        image.display()
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(i) = hay.get(from..)?.iter().position(|&b| b == first) {
        let at = from + i;
        if hay.get(at..at + needle.len())? == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The error of a command that must fail.
fn vmark_fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        !out.status.success(),
        "vmark {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `vmark ps --json` on the untouched dump (asked once: each run scans the dump).
fn guest_ps() -> &'static Value {
    static PS: OnceLock<Value> = OnceLock::new();
    PS.get_or_init(|| vmark_json(&["ps", path(&sources().fixture.dump), "--json"]))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn without_btf_in_memory_ps_names_btf_and_the_options() {
    let s = sources();
    let err = vmark_fails(&["ps", path(&s.no_btf)]);
    for want in [
        "BTF",
        "CONFIG_DEBUG_INFO_BTF",
        "--btf FILE",
        "DWARF",
        "buildmacros/kernel-types",
    ] {
        assert!(err.contains(want), "{want:?} missing from: {err}");
    }
    // Symbols still work without BTF.
    let sym = vmark_json(&["sym", path(&s.no_btf), "init_task", "--json"]);
    assert_eq!(sym[0]["name"], "init_task");
    // A name that is no kernel symbol needs the modules' symbols, which need BTF: the
    // kernel's own answer stays, the modules are an unread row, the name is not found.
    let out = run(&["sym", path(&s.no_btf), "init_task", "crc7_be", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "crc7_be cannot be found without BTF");
    assert!(stderr.contains("not found: crc7_be"), "{stderr}");
    let rows: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(rows[0]["name"], "init_task", "{rows}");
    assert!(
        rows.as_array()
            .is_some_and(|r| r.iter().any(|row| row["item"] == "module symbols"
                && row["error"].as_str().is_some_and(|e| e.contains("BTF")))),
        "{rows}"
    );
}

#[test]
fn a_btf_file_gives_the_guests_own_ps_and_modules() {
    let s = sources();
    let dump = path(&s.fixture.dump);
    let want_ps = guest_ps();
    let want_modules = vmark_json(&["modules", dump, "--json"]);
    assert!(
        want_ps.as_array().is_some_and(|a| a.len() > 20),
        "{want_ps}"
    );
    // A raw blob, then an ELF with a .BTF section.
    let got = vmark_json(&["ps", path(&s.no_btf), "--btf", path(&s.blob), "--json"]);
    assert_eq!(&got, want_ps, "ps --btf blob");
    let modules = vmark_json(&[
        "modules",
        path(&s.no_btf),
        "--btf",
        path(&s.vmlinux),
        "--json",
    ]);
    assert_eq!(modules, want_modules, "modules --btf vmlinux");
    // What the guest itself printed.
    if let Some((lines, end)) = s.fixture.section("PS") {
        let guest = GuestPs::parse(&lines, end).unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = guest.compare(&got) {
            panic!("ps --btf differs from the guest's ps: {e}");
        }
    }
    // --vmlinux: the image's kallsyms tables for symbols and its .BTF for types.
    let got = vmark_json(&[
        "ps",
        path(&s.no_btf),
        "--vmlinux",
        path(&s.vmlinux),
        "--json",
    ]);
    assert_eq!(&got, want_ps, "ps --vmlinux");
}

#[test]
fn a_system_map_gives_the_same_symbols_as_kallsyms() {
    let s = sources();
    let names = [
        "init_task",
        "linux_banner",
        "_text",
        "__start_BTF",
        "jiffies",
        "schedule",
        "do_sys_openat2",
    ];
    let mut args = vec!["sym", path(&s.no_btf)];
    args.extend(names);
    args.extend(["--near", "init_task+0x10", "--json"]);
    let want = vmark_json(&args);
    assert_eq!(
        want.as_array().map(Vec::len),
        Some(names.len() + 1),
        "{want}"
    );
    args.extend(["--system-map", path(&s.system_map)]);
    assert_eq!(vmark_json(&args), want);
    // Symbols from the map and types from the blob together.
    let ps = vmark_json(&[
        "ps",
        path(&s.no_btf),
        "--system-map",
        path(&s.system_map),
        "--btf",
        path(&s.blob),
        "--json",
    ]);
    assert_eq!(&ps, guest_ps());
}

/// A copy of the map with `name`'s address moved by `by`, under `file_name`.
fn altered_map(s: &Sources, file_name: &str, name: &str, by: u64) -> PathBuf {
    let text = std::fs::read_to_string(&s.system_map).unwrap();
    let mut moved = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace();
            let (Some(a), Some(k), Some(n)) = (f.next(), f.next(), f.next()) else {
                return l.to_string();
            };
            if n != name {
                return l.to_string();
            }
            moved = true;
            let a = u64::from_str_radix(a, 16).unwrap() + by;
            format!("{a:016x} {k} {n}")
        })
        .collect();
    assert!(moved || by == 0, "{name} is not in the map");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("type_sources/{name}-{by}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(file_name);
    std::fs::write(&out, lines.join("\n") + "\n").unwrap();
    out
}

#[test]
fn mismatched_system_maps_are_refused() {
    let s = sources();
    let release_name = format!("System.map-{}", s.fixture.release);
    // One symbol moved: the guest's kallsyms disagrees.
    let map = altered_map(s, &release_name, "init_task", 0x40);
    let err = vmark_fails(&[
        "sym",
        path(&s.no_btf),
        "init_task",
        "--system-map",
        path(&map),
    ]);
    assert!(
        err.contains("does not match the kernel in memory") && err.contains("init_task"),
        "{err}"
    );
    // The banner moved: no KASLR slide puts it on the guest's banner.
    let map = altered_map(s, &release_name, "linux_banner", 0x1000);
    let err = vmark_fails(&[
        "sym",
        path(&s.no_btf),
        "init_task",
        "--system-map",
        path(&map),
    ]);
    assert!(
        err.contains("does not match the kernel in memory") && err.contains("linux_banner"),
        "{err}"
    );
    // Another release's map (by its name): the banner says otherwise.
    let map = altered_map(s, "System.map-5.10.0-99-amd64", "init_task", 0);
    let err = vmark_fails(&[
        "sym",
        path(&s.no_btf),
        "init_task",
        "--system-map",
        path(&map),
    ]);
    assert!(
        err.contains("does not match the kernel in memory") && err.contains("5.10.0-99-amd64"),
        "{err}"
    );
}

#[test]
fn btf_of_another_kernel_is_refused() {
    let s = sources();
    let ours = std::fs::read(&s.blob).unwrap();
    // The running kernel's BTF when it is another kernel, else another fixture's kernel.
    let running = Path::new("/sys/kernel/btf/vmlinux");
    let other = std::fs::read(running)
        .ok()
        .filter(|b| *b != ours)
        .map(|_| running.to_path_buf())
        .unwrap_or_else(|| {
            panic!(
                "no BTF of another kernel on this machine ({} is this kernel's or missing)",
                running.display()
            )
        });
    let err = vmark_fails(&["ps", path(&s.no_btf), "--btf", path(&other)]);
    assert!(
        err.contains("does not match the kernel in memory") && err.contains("another kernel"),
        "{err}"
    );
    // Garbage is not BTF.
    let err = vmark_fails(&["ps", path(&s.no_btf), "--btf", path(&s.system_map)]);
    assert!(err.contains("neither a BTF blob"), "{err}");
}
