//! The kernel matrix (issue 9): real Debian kernels, fetched from the archive and unpacked
//! into `target/kernels/` by `tests/fetch-kernels.sh` (never installed), each booted under
//! QEMU (TCG) with `examples/marks-demo` built against that kernel's own headers, and
//! dumped (see `vmark_host::introspect::fixture`). On each dump, and on the guest's shared
//! RAM file, `vmark ps`, `modules`, `sym` (name → address and `--near`), `read-va`,
//! `read-pa`, `read --source` of every mark and `--follow` must agree with what the guest
//! printed about itself before the dump; `vmark inspect` must agree with pahole member for
//! member on `tests/fixtures/typezoo` built against the same headers.
//!
//! Rows: `matrix_6_1_amd64` (the host's kernel), `matrix_6_12_amd64` (bookworm-backports),
//! `matrix_6_1_rt_amd64` (PREEMPT_RT), `matrix_6_1_amd64_la57` (QEMU offers 5-level paging
//! and the guest must use it), `matrix_6_1_686_pae_i386` and `matrix_6_1_686_i386` (32-bit,
//! PAE and not, under `qemu-system-i386`). Each row runs every part and fails naming all
//! parts that failed (a module that does not build for the kernel is one; the guest then
//! boots without it). Plus one kernel vmark cannot read: its BTF destroyed in the
//! dump. Fixtures are cached (keyed by release, machine and initramfs); a missing
//! prerequisite fails the test, never skips it.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use vmark_host::inspect::{inspect, InspectOptions};
use vmark_host::introspect::fixture::{self, Arch, Fixture, Kernel, Machine};
use vmark_tests::guest_lists::{compare_modules, proc_modules, GuestPs};
use vmark_tests::kmod::{make_marked_module_in, run_vmark, vmark, vmark_json, workspace_root};
use vmark_tests::matrix::{
    build_module_in, compare_layouts, elf_core_offset, fetch, hex, parse_iomem, parse_kallsyms,
    GuestSymbol, TYPEZOO_STRUCTS,
};
use vmark_tests::{nested, pahole};

/// Where a row's kernel comes from.
enum Source {
    /// The host's own kernel and headers (`tests/install-deps.sh` installs them).
    Host,
    /// `tests/fetch-kernels.sh SUITE ARCH FLAVOUR`.
    Archive(&'static str, &'static str, &'static str),
}

/// One row of the matrix.
struct Row {
    /// Test name, for work directories.
    name: &'static str,
    source: Source,
    machine: Machine,
    /// Checks known not to pass on this kernel, with why (the README's table says so too):
    /// each must still fail, so that one that starts working is noticed and the table
    /// updated.
    known_gaps: &'static [(&'static str, &'static str)],
}

/// A row's kernel, its Kbuild tree, its built fixture, and what did not build for it.
struct Booted {
    kernel: Kernel,
    kdir: PathBuf,
    fixture: Fixture,
    /// Module builds that failed (the guest then boots without marks-demo, so the checks
    /// that need no marks still run): (what, error).
    build_failures: Vec<(&'static str, String)>,
    /// For a kernel without BTF: the kernel-types probe (`buildmacros/kernel-types`) built
    /// against its headers, given to every command that needs struct layouts.
    types: Option<PathBuf>,
}

fn work_dir(row: &Row) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("kernel_matrix")
        .join(row.name)
}

/// Fetches the row's kernel, builds marks-demo (and the guest helper) against its headers,
/// and boots and dumps it (cached).
fn boot(row: &Row) -> Booted {
    let (kernel, kdir) = match row.source {
        Source::Host => {
            let k = Kernel::host().unwrap_or_else(|e| panic!("{e}"));
            let kdir = k.modules.join("build");
            (k, kdir)
        }
        Source::Archive(suite, arch, flavour) => {
            let u = fetch(suite, arch, flavour).unwrap_or_else(|e| panic!("{e}"));
            let k = Kernel::unpacked(&u.root, &u.release).unwrap_or_else(|e| panic!("{e}"));
            (k, u.kdir())
        }
    };
    let work = work_dir(row);
    let mut build_failures = Vec::new();
    let demo = make_marked_module_in(
        &kdir,
        &workspace_root().join("examples/marks-demo"),
        &work.join("marks-demo"),
        "marks_demo",
        &[],
    );
    let extra: Vec<PathBuf> = match demo {
        Ok(ko) => vec![ko],
        Err(e) => {
            build_failures.push(("marks-demo builds", e));
            Vec::new()
        }
    };
    // The helper must build against every kernel of the matrix that has Xen support
    // (Debian's non-PAE 686 has no CONFIG_XEN: the helper refuses to build there, by
    // design); it needs Xen to load, so the QEMU guest does not load it.
    let config = std::fs::read_to_string(kdir.join(".config"))
        .unwrap_or_else(|e| panic!("{}/.config: {e}", kdir.display()));
    if config.lines().any(|l| l == "CONFIG_XEN=y") {
        if let Err(e) = nested::build_helper(&work.join("helper"), &kdir) {
            build_failures.push(("guest-kmod builds", e));
        }
    } else {
        eprintln!("{}: no CONFIG_XEN: guest-kmod not built", kernel.release);
    }
    // A kernel without BTF gets its struct layouts from DWARF: the kernel-types probe,
    // compiled from its own headers.
    let types = if config.lines().any(|l| l == "CONFIG_DEBUG_INFO_BTF=y") {
        None
    } else {
        match kernel_types_probe(&kdir, &work) {
            Ok(ko) => Some(ko),
            Err(e) => {
                build_failures.push(("kernel-types probe builds", e));
                None
            }
        }
    };
    let fixture =
        fixture::build_for(&kernel, row.machine, &extra).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{}: {} dump {} serial {}",
        row.name,
        kernel.release,
        fixture.dump.display(),
        fixture.serial_path.display()
    );
    Booted {
        kernel,
        kdir,
        fixture,
        build_failures,
        types,
    }
}

/// `buildmacros/kernel-types` built against `kdir` in `work`: its `.ko`.
fn kernel_types_probe(kdir: &Path, work: &Path) -> Result<PathBuf, String> {
    build_module_in(
        kdir,
        &workspace_root().join("buildmacros/kernel-types"),
        &work.join("kernel-types"),
        "vmark_kernel_types",
    )
}

fn section<'a>(f: &'a Fixture, part: &str) -> (Vec<&'a str>, &'a str) {
    f.section(part)
        .unwrap_or_else(|| panic!("the guest printed no {part} section:\n{}", f.serial))
}

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => u8::from(*b).to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn addr_of(v: &Value) -> u64 {
    v.as_str()
        .and_then(hex)
        .unwrap_or_else(|| panic!("not an address: {v}"))
}

/// What the guest printed about itself, parsed.
struct View<'a> {
    f: &'a Fixture,
    dump: &'a str,
    ram: &'a str,
    guest_syms: Vec<GuestSymbol>,
    /// marks_demo's symbols whose name is unique among the guest's modules.
    demo_syms: Vec<GuestSymbol>,
    values: BTreeMap<&'a str, &'a str>,
    /// `--btf PROBE` for a kernel without BTF ([`Booted::types`]), else nothing.
    types: Vec<&'a str>,
}

impl View<'_> {
    /// `args` with the row's type source appended.
    fn typed<'b>(&'b self, args: &[&'b str]) -> Vec<&'b str> {
        let mut all = args.to_vec();
        all.extend(self.types.iter().copied());
        all
    }

    fn kernel_sym(&self, name: &str) -> u64 {
        self.guest_syms
            .iter()
            .find(|s| s.module.is_none() && s.name == name)
            .unwrap_or_else(|| panic!("the guest printed no kallsyms line for {name}"))
            .addr
    }

    fn has_kernel_sym(&self, name: &str) -> bool {
        self.guest_syms
            .iter()
            .any(|s| s.module.is_none() && s.name == name)
    }

    fn demo_sym(&self, name: &str) -> u64 {
        self.demo_syms
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("the guest printed no marks_demo symbol {name}"))
            .addr
    }
}

fn view(f: &Fixture) -> View<'_> {
    let (ks_lines, _) = section(f, "KALLSYMS");
    let guest_syms = parse_kallsyms(&ks_lines).unwrap_or_else(|e| panic!("{e}"));
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in guest_syms.iter().filter(|s| s.module.is_some()) {
        *counts.entry(&s.name).or_default() += 1;
    }
    let demo_syms: Vec<GuestSymbol> = guest_syms
        .iter()
        .filter(|s| s.module.as_deref() == Some("marks_demo") && counts[s.name.as_str()] == 1)
        .cloned()
        .collect();
    let (val_lines, _) = section(f, "VALUES");
    let values: BTreeMap<&str, &str> = val_lines.iter().filter_map(|l| l.split_once('=')).collect();
    View {
        f,
        dump: f.dump.to_str().expect("UTF-8 path"),
        ram: f.ram.to_str().expect("UTF-8 path"),
        guest_syms,
        demo_syms,
        values,
        types: Vec::new(),
    }
}

/// The guest is the kernel we meant, in the paging mode we meant.
fn identity(row: &Row, b: &Booted, v: &View) {
    // The guest is the kernel we meant, in the paging mode we meant.
    let (uname, _) = section(v.f, "UNAME");
    assert!(
        uname.iter().any(|l| l.contains(&b.kernel.release)),
        "{uname:?}"
    );
    let (la57, _) = section(v.f, "LA57");
    assert_eq!(
        la57.iter().any(|l| l.trim() == "la57"),
        row.machine.la57,
        "/proc/cpuinfo la57 flag (5-level paging in use) should be {}",
        row.machine.la57
    );
}

/// `ps` and `modules` on the dump and on the shared RAM file equal the guest's lists.
fn processes_and_modules(v: &View) {
    // Processes and modules, on the dump and on the shared RAM file.
    let (lines, end) = section(v.f, "PS");
    let guest_ps = GuestPs::parse(&lines, end).unwrap_or_else(|e| panic!("{e}"));
    assert!(guest_ps.procs.len() > 10, "{guest_ps:?}");
    let (mod_lines, _) = section(v.f, "MODULES");
    let guest_mods = proc_modules(&mod_lines);
    for (src, fmt) in [(v.dump, "qemu-elf"), (v.ram, "qemu-shm")] {
        let ps = vmark_json(&v.typed(&["ps", src, "--json", "--format", fmt]));
        if let Err(e) = guest_ps.compare(&ps) {
            panic!("vmark ps on {src} ({fmt}) differs from the guest's ps: {e}");
        }
        let mods = vmark_json(&v.typed(&["modules", src, "--json", "--format", fmt]));
        if let Err(e) = compare_modules(&guest_mods, &mods) {
            panic!("vmark modules on {src} ({fmt}): {e}");
        }
    }
}

/// `sym` name → address equals the guest's /proc/kallsyms, kernel and module symbols.
fn symbols(v: &View) {
    // Kernel symbols (the data ones only with CONFIG_KALLSYMS_ALL) in one call.
    let kernel: Vec<&str> = fixture::KALLSYMS
        .into_iter()
        .filter(|n| v.has_kernel_sym(n))
        .collect();
    assert!(kernel.contains(&"schedule"), "{kernel:?}");
    let got = vmark_json(&v.typed(&[&["sym", v.dump][..], &kernel, &["--json"]].concat()));
    let got = got.as_array().expect("array");
    assert_eq!(got.len(), kernel.len(), "{got:?}");
    for (name, g) in kernel.iter().zip(got) {
        assert_eq!(
            addr_of(&g["addr"]),
            v.kernel_sym(name),
            "vmark sym {name}: {g}"
        );
    }
    // marks_demo's symbols whose name is unique among the guest's modules, in another.
    let names: Vec<&str> = v.demo_syms.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"demo_exit"),
        "marks_demo's symbols: {names:?}"
    );
    if v.has_kernel_sym("linux_banner") {
        // With CONFIG_KALLSYMS_ALL the guest lists data symbols too: the mark records.
        assert!(
            names.contains(&"__vmark_rec_demo_counter"),
            "marks_demo's symbols: {names:?}"
        );
    }
    let got = vmark_json(&v.typed(&[&["sym", v.dump][..], &names, &["--json"]].concat()));
    let got = got.as_array().expect("array");
    assert_eq!(got.len(), names.len(), "{got:?}");
    for (s, g) in v.demo_syms.iter().zip(got) {
        assert_eq!(g["module"], "marks_demo", "{} {g}", s.name);
        assert_eq!(addr_of(&g["addr"]), s.addr, "vmark sym {}: {g}", s.name);
    }
}

/// `sym --near` names the kernel symbol and the module symbol an address is in.
fn symbols_near(v: &View) {
    // A function (every kallsyms has them) and, with CONFIG_KALLSYMS_ALL, a data object.
    for name in ["schedule", "linux_banner"] {
        if name != "schedule" && !v.has_kernel_sym(name) {
            continue;
        }
        let near = vmark_json(&v.typed(&[
            "sym",
            v.dump,
            "--near",
            &format!("{:#x}", v.kernel_sym(name) + 4),
            "--json",
        ]));
        assert_eq!(near[0]["near"], format!("{name}+0x4"), "{near}");
    }
    // A module symbol: a mark's record, or (no CONFIG_KALLSYMS_ALL) a function.
    let name = if v.has_kernel_sym("linux_banner") {
        "__vmark_rec_demo_counter"
    } else {
        "demo_exit"
    };
    let near = vmark_json(&v.typed(&[
        "sym",
        v.dump,
        "--near",
        &format!("{:#x}", v.demo_sym(name) + 8),
        "--json",
    ]));
    assert_eq!(near[0]["near"], format!("{name}+0x8"), "{near}");
}

/// `read-va` and `read-pa` read the banner the guest's kallsyms and iomem place.
fn memory_reads(b: &Booted, v: &View) {
    // The guest's /proc/iomem says where its code starts (physical), its kallsyms where
    // _text is (virtual): both reads see the same bytes, on the dump and on the RAM file.
    let (io_lines, _) = section(v.f, "IOMEM");
    let iomem = parse_iomem(&io_lines).unwrap_or_else(|e| panic!("{e}"));
    let code = iomem
        .get("Kernel code")
        .unwrap_or_else(|| panic!("no Kernel code in {iomem:?}"))
        .0;
    let text = v.kernel_sym("_text");
    let by_va = vmark(&["read-va", v.dump, &format!("{text:#x}"), "256", "--hex"]);
    assert_eq!(vmark(&["read-va", v.dump, "_text", "256", "--hex"]), by_va);
    for src in [v.dump, v.ram] {
        let by_pa = vmark(&["read-pa", src, &format!("{code:#x}"), "256", "--hex"]);
        assert_eq!(by_pa, by_va, "read-pa {code:#x} of {src} and read-va _text");
    }
    // Below 3.5 GiB the RAM file is a raw image of guest memory: forced as one, the same.
    let raw = vmark(&[
        "read-pa",
        "--format",
        "raw",
        v.ram,
        &format!("{code:#x}"),
        "256",
        "--hex",
    ]);
    assert_eq!(raw, by_va, "read-pa --format raw {code:#x} of {}", v.ram);
    if !v.has_kernel_sym("linux_banner") {
        return;
    }
    // The banner names this kernel's release, read by name, by address and physically.
    let banner = v.kernel_sym("linux_banner");
    let name = vmark(&["read-va", v.dump, "linux_banner", "200", "--raw"]);
    assert!(
        name.starts_with(&format!("Linux version {} ", b.kernel.release)),
        "{name:?}"
    );
    assert_eq!(
        vmark(&["read-va", v.dump, &format!("{banner:#x}"), "200", "--raw"]),
        name
    );
    let banner_pa = code + (banner - text);
    for src in [v.dump, v.ram] {
        let pa = vmark(&["read-pa", src, &format!("{banner_pa:#x}"), "200", "--raw"]);
        assert_eq!(pa, name, "read-pa {banner_pa:#x} of {src}");
    }
}

/// `list --source` and `read --source` of every mark equal the guest's own values.
fn marks(v: &View) {
    // Marks, found in guest memory, equal the guest's own values.
    assert!(
        v.values.contains_key("counter"),
        "the guest printed no marks-demo values (marks-demo not loaded)"
    );
    let listed = vmark_json(&v.typed(&["list", "--source", v.dump, "--json"]));
    let marks: BTreeSet<String> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            assert!(r.get("error").is_none(), "{r}");
            r["mark"].as_str().expect("mark").to_string()
        })
        .collect();
    let want: BTreeSet<String> = ["counter", "demo_hist", "demo_state", "demo_tcp", "demo_tp"]
        .map(String::from)
        .into();
    assert_eq!(marks, want);
    let read = |mark: &str| -> Value {
        let r = vmark_json(&v.typed(&["read", "--source", v.dump, mark, "--json"]));
        assert_eq!(r["consistent"], true, "{r}");
        r["value"].clone()
    };
    assert_eq!(num(&read("counter")), v.values["counter"]);
    let state = read("demo_state");
    for field in [
        "id", "mode", "enabled", "level", "delta", "raw", "lo", "hi", "phase",
    ] {
        let ours = state
            .get(field)
            .or_else(|| {
                state
                    .as_object()
                    .and_then(|o| o.values().find_map(|v| v.get(field)))
            })
            .unwrap_or_else(|| panic!("no {field} in {state}"));
        let ours = match ours {
            Value::Object(e) if e.contains_key("value") => num(&e["value"]),
            v => num(v),
        };
        assert_eq!(
            ours,
            v.values[format!("demo_state.{field}").as_str()],
            "demo_state.{field}"
        );
    }
    assert_eq!(state["label"], v.values["demo_state.label"]);
    assert_eq!(
        num(&state["addr"]["port"]),
        v.values["demo_state.addr.port"]
    );
    let hist = read("demo_hist");
    for i in 0..8 {
        assert_eq!(
            num(&hist[i]),
            v.values[format!("demo_hist[{i}]").as_str()],
            "{hist}"
        );
    }
    let tcp = read("demo_tcp");
    for fld in [
        "snd_cwnd",
        "srtt_us",
        "mss_cache",
        "rcv_nxt",
        "bytes_received",
    ] {
        assert_eq!(
            num(&tcp[fld]),
            v.values[format!("demo_tcp.{fld}").as_str()],
            "demo_tcp.{fld}"
        );
    }
}

/// `--follow` and `--path` through demo_tp reach demo_tcp.
fn pointers(v: &View) {
    // demo_tp points at demo_tcp: --follow decodes the pointee.
    assert_eq!(v.values["demo_tp_is_demo_tcp"], "1");
    let r = vmark_json(&v.typed(&[
        "read", "--source", v.dump, "demo_tp", "--follow", "1", "--json",
    ]));
    let p = &r["pointees"][0];
    assert_eq!(p["type"], "struct tcp_sock", "{r}");
    // Where demo_tcp is: the guest's kallsyms says, when it lists data (else the mark's
    // address, which the guest's demo_tp_is_demo_tcp=1 ties to demo_tp's value).
    let demo_tcp = if v.demo_syms.iter().any(|s| s.name == "demo_tcp") {
        v.demo_sym("demo_tcp")
    } else {
        addr_of(&vmark_json(&v.typed(&["read", "--source", v.dump, "demo_tcp", "--json"]))["addr"])
    };
    assert_eq!(addr_of(&p["addr"]), demo_tcp, "{r}");
    for fld in ["snd_cwnd", "srtt_us", "bytes_received"] {
        assert_eq!(
            num(&p["value"][fld]),
            v.values[format!("demo_tcp.{fld}").as_str()],
            "{fld}"
        );
    }
    let cwnd = vmark_json(&v.typed(&[
        "read",
        "--source",
        v.dump,
        "demo_tp",
        "--path",
        "demo_tp->snd_cwnd",
        "--json",
    ]));
    assert_eq!(num(&cwnd["value"]), v.values["demo_tp.snd_cwnd"]);
}

/// Every check on one booted kernel; each part runs even when another fails, and the test
/// fails naming every part that did.
fn check(row: &Row, b: &Booted) {
    let mut v = view(&b.fixture);
    if let Some(types) = &b.types {
        v.types = vec!["--btf", types.to_str().expect("UTF-8 path")];
    }
    type Part = fn(&Row, &Booted, &View);
    let parts: [(&str, Part); 8] = [
        ("identity", identity),
        ("ps/modules", |_, _, v| processes_and_modules(v)),
        ("sym", |_, _, v| symbols(v)),
        ("sym --near", |_, _, v| symbols_near(v)),
        ("read-va/read-pa", |_, b, v| memory_reads(b, v)),
        ("read --source", |_, _, v| marks(v)),
        ("--follow/--path", |_, _, v| pointers(v)),
        ("inspect vs pahole", |r, b, _| pahole_agrees(r, b)),
    ];
    let mut failed = Vec::new();
    for (name, e) in &b.build_failures {
        eprintln!("{} {}: {name}: FAILED\n{e}", row.name, b.kernel.release);
        failed.push(*name);
    }
    for (name, part) in parts {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| part(row, b, &v)));
        let gap = row.known_gaps.iter().find(|(g, _)| *g == name);
        let verdict = match (ok.is_ok(), gap) {
            (true, None) => "ok",
            (false, Some((_, why))) => {
                eprintln!(
                    "{} {}: {name}: known gap ({why})",
                    row.name, b.kernel.release
                );
                continue;
            }
            (true, Some(_)) => {
                "passes although listed as a known gap: update the row and the README"
            }
            (false, None) => "FAILED",
        };
        eprintln!("{} {}: {name}: {verdict}", row.name, b.kernel.release);
        if verdict != "ok" {
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "{} ({}): failed: {}",
        row.name,
        b.kernel.release,
        failed.join(", ")
    );
}

/// `vmark inspect` agrees with pahole on typezoo built against the row's headers.
fn pahole_agrees(row: &Row, b: &Booted) {
    let version = pahole::version().unwrap_or_else(|e| panic!("{e}"));
    let ko = build_module_in(
        &b.kdir,
        &workspace_root().join("tests/fixtures/typezoo"),
        &work_dir(row).join("typezoo"),
        "typezoo",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut bad = Vec::new();
    let mut members = 0;
    for name in TYPEZOO_STRUCTS {
        let p = match pahole::layout(&ko, name) {
            Ok(p) => p,
            Err(e) => {
                bad.push(format!("struct {name}: {e}"));
                continue;
            }
        };
        let opts = InspectOptions {
            type_name: Some(format!("struct {name}")),
            json: true,
            pointer_depth: 0,
        };
        let mut out = Vec::new();
        if let Err(e) = inspect(&ko, &opts, &mut out) {
            bad.push(format!("vmark inspect --type 'struct {name}': {e}"));
            continue;
        }
        let v: Value = serde_json::from_slice(&out).expect("inspect --json prints JSON");
        members += p.members.len();
        bad.extend(compare_layouts(name, &p, &v));
    }
    assert!(
        bad.is_empty(),
        "{}: vmark inspect disagrees with pahole {version} on {}:\n{}",
        b.kernel.release,
        ko.display(),
        bad.join("\n")
    );
    assert!(
        TYPEZOO_STRUCTS.len() >= 20 && members > 500,
        "too little compared"
    );
}

/// The host's own kernel (6.1 amd64), 4-level paging.
fn host_row() -> Row {
    Row {
        name: "6.1-amd64",
        source: Source::Host,
        machine: Machine::default(),
        known_gaps: &[],
    }
}

/// Debian's 6.1 686-pae (i386, PAE): no BTF, no data symbols.
fn i386_pae_row() -> Row {
    Row {
        name: "6.1-686-pae",
        source: Source::Archive("bookworm", "i386", "686-pae"),
        machine: Machine {
            arch: Arch::I386,
            la57: false,
            vmcoreinfo: false,
        },
        known_gaps: &[],
    }
}

fn run(row: Row) {
    let b = boot(&row);
    check(&row, &b);
}

#[test]
fn matrix_6_1_amd64() {
    run(host_row());
}

#[test]
fn matrix_6_1_amd64_la57() {
    run(Row {
        name: "6.1-amd64-la57",
        source: Source::Host,
        machine: Machine {
            arch: Arch::X86_64,
            la57: true,
            vmcoreinfo: false,
        },
        known_gaps: &[],
    });
}

#[test]
fn matrix_6_12_amd64() {
    run(Row {
        name: "6.12-amd64",
        source: Source::Archive("bookworm-backports", "amd64", "amd64"),
        machine: Machine::default(),
        known_gaps: &[],
    });
}

#[test]
fn matrix_6_1_rt_amd64() {
    run(Row {
        name: "6.1-rt-amd64",
        source: Source::Archive("bookworm", "amd64", "rt-amd64"),
        machine: Machine::default(),
        known_gaps: &[],
    });
}

#[test]
fn matrix_6_1_686_pae_i386() {
    run(i386_pae_row());
}

#[test]
fn matrix_6_1_686_i386() {
    run(Row {
        name: "6.1-686",
        source: Source::Archive("bookworm", "i386", "686"),
        machine: Machine {
            arch: Arch::I386,
            la57: false,
            vmcoreinfo: false,
        },
        known_gaps: &[],
    });
}

/// A kernel whose BTF is gone (here: the blob at `__start_BTF` zeroed in a copy of the
/// host kernel's dump, as if the image had been stripped): what needs BTF fails with an
/// error that names BTF and how to get it, and what does not (symbols) still works.
#[test]
fn a_kernel_without_btf_is_an_error_that_names_the_fix() {
    let row = host_row();
    let b = boot(&row);
    let f = &b.fixture;
    let (ks_lines, _) = section(f, "KALLSYMS");
    let guest_syms = parse_kallsyms(&ks_lines).unwrap_or_else(|e| panic!("{e}"));
    let text = guest_syms
        .iter()
        .find(|s| s.name == "_text")
        .expect("_text")
        .addr;
    let dump = f.dump.to_str().expect("UTF-8 path");
    let btf = addr_of(&vmark_json(&["sym", dump, "__start_BTF", "--json"])[0]["addr"]);
    let (io_lines, _) = section(f, "IOMEM");
    let code = parse_iomem(&io_lines).unwrap_or_else(|e| panic!("{e}"))["Kernel code"].0;
    let btf_pa = code + (btf - text);
    let mut bytes = std::fs::read(&f.dump).expect("read dump");
    let off = elf_core_offset(&bytes, btf_pa).expect("BTF in the dump") as usize;
    assert_eq!(
        &bytes[off..off + 2],
        &[0x9f, 0xeb],
        "BTF magic at __start_BTF"
    );
    bytes[off..off + 4096].fill(0);
    let stripped = work_dir(&row).join("btf-stripped.elf");
    std::fs::create_dir_all(stripped.parent().unwrap()).unwrap();
    std::fs::write(&stripped, &bytes).expect("write stripped dump");
    let stripped = stripped.to_str().expect("UTF-8 path");

    let banner = vmark(&["read-va", stripped, "linux_banner", "14", "--raw"]);
    assert_eq!(banner, "Linux version ");
    for cmd in ["ps", "modules"] {
        let out = run_vmark(&[cmd, stripped]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "vmark {cmd} on a BTF-less dump succeeded"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains("BTF"),
            "vmark {cmd}: the error should name BTF: {err}"
        );
        assert!(
            err.contains("--btf") || err.contains("CONFIG_DEBUG_INFO_BTF"),
            "vmark {cmd}: the error should say how to supply types (--btf FILE / CONFIG_DEBUG_INFO_BTF): {err}"
        );
    }
}

/// A kernel really built without BTF (Debian's i386 kernels have no
/// `CONFIG_DEBUG_INFO_BTF`): the process list fails with an error that names what is
/// missing, and what needs no types (symbols) still works.
#[test]
fn a_kernel_built_without_btf_is_an_error_that_names_it() {
    let row = i386_pae_row();
    let b = boot(&row);
    let config = b.kdir.join(".config");
    let config =
        std::fs::read_to_string(&config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    assert!(
        config.contains("# CONFIG_DEBUG_INFO_BTF is not set"),
        "{} has BTF now: pick another BTF-less kernel",
        b.kernel.release
    );
    let v = view(&b.fixture);
    let got = vmark_json(&["sym", v.dump, "_text", "--json"]);
    assert_eq!(addr_of(&got[0]["addr"]), v.kernel_sym("_text"), "{got}");
    let out = run_vmark(&["ps", v.dump]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "vmark ps on a BTF-less kernel succeeded"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("BTF") && err.contains("CONFIG_DEBUG_INFO_BTF"),
        "the error should name the missing BTF and the config option: {err}"
    );
    assert!(
        err.contains("buildmacros/kernel-types"),
        "the error should name the fix (the kernel-types probe): {err}"
    );
}

/// Struct layouts from DWARF (the kernel-types probe built against the host kernel's
/// headers) give the same process and module lists as the kernel's own BTF; a probe of
/// another architecture is refused with a message that says so.
#[test]
fn dwarf_types_from_the_headers_equal_btf_and_another_arch_is_refused() {
    let host = host_row();
    let b = boot(&host);
    let probe = kernel_types_probe(&b.kdir, &work_dir(&host)).unwrap_or_else(|e| panic!("{e}"));
    let probe = probe.to_str().expect("UTF-8 path");
    let dump = b.fixture.dump.to_str().expect("UTF-8 path");
    for cmd in ["ps", "modules"] {
        let btf = vmark_json(&[cmd, dump, "--json"]);
        let dwarf = vmark_json(&[cmd, dump, "--json", "--btf", probe]);
        assert_eq!(
            btf, dwarf,
            "vmark {cmd}: DWARF types differ from the kernel's BTF"
        );
        assert!(btf.as_array().is_some_and(|a| a.len() > 2), "{btf}");
    }
    let i386 = i386_pae_row();
    let b32 = boot(&i386);
    let out = run_vmark(&[
        "ps",
        b32.fixture.dump.to_str().expect("UTF-8 path"),
        "--btf",
        probe,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "amd64 types accepted for an i386 kernel"
    );
    assert!(
        err.contains("another architecture") && err.contains("does not match"),
        "{err}"
    );
}
