//! Every budget vmark sets on work a guest describes, in one place.
//!
//! A guest (or a dump of one) chooses the types in its manifests, the contents of its memory
//! and what it publishes in xenstore. None of these numbers is taken from the guest: each
//! walk over guest-described data counts against one of the constants below, and going over
//! is an error for that item alone (one mark, one module, one process, one domain), never a
//! panic, an abort or an unbounded loop. The README's "Against a hostile guest" section lists
//! them too.

// ---- live path: xenstore, watch, recordings (host/src/guest.rs, live.rs, watch.rs) ----

/// Longest xenstore value the host accepts from a guest's tree (xenstore's own payload
/// limit is 4096 bytes; anything longer is not something the helper wrote).
pub const XS_MAX_VALUE_LEN: usize = 4096;
/// Modules of one domain that `list`/`read`/`watch` look at: far more than any guest loads
/// with marks, few enough that one guest cannot make a listing take long.
pub const LIVE_MAX_MODULES_PER_DOMAIN: usize = 256;
/// Domains `vmark list` looks at (Xen's own default limit on domains is lower in practice).
pub const LIVE_MAX_DOMAINS: usize = 4096;
/// Decoded manifests one guest's watch keeps in its cache (shared by content hash); a
/// watch needs at most one per watched module, the rest is dropped as soon as unused.
pub const LIVE_MAX_CACHED_MANIFESTS: usize = 64;
/// A xenstore change is acted on this long (ms) after the first event of a burst, so a
/// burst of writes (one module's transaction, a guest rewriting its tree) is one refresh.
pub const WATCH_REFRESH_DEBOUNCE_MS: u64 = 100;
/// At most one refresh of the published tree per this many ms, however often the guest
/// writes: a guest rewriting its tree in a loop costs the host a bounded share of a core.
pub const WATCH_REFRESH_MIN_INTERVAL_MS: u64 = 500;
/// Default limit of sampling rounds per second of `vmark watch` (`--max-rate`). Wake-ups
/// over it are folded into the next round (their triggers stay accounted for) and counted.
pub const WATCH_DEFAULT_MAX_RATE: u32 = 2000;
/// Pauses beyond the first of one `--pause` capture when a write is found open (the guest
/// is let run between them to finish it); then the open mark is reported torn.
pub const CAPTURE_MAX_REPAUSES: u32 = 8;
/// How long (µs) a `--pause` capture lets the guest run to finish an open write.
pub const CAPTURE_REPAUSE_GAP_US: u64 = 200;
/// Highest `--max-rate` accepted: there is always a limit.
pub const WATCH_MAX_RATE: u32 = 1_000_000;
/// Times a lost xenstore watch is re-established (with exponential backoff from
/// [`WATCH_RESUBSCRIBE_BACKOFF_MS`]) before the watch ends with a clear status.
pub const WATCH_RESUBSCRIBE_ATTEMPTS: u32 = 5;
/// First backoff before re-establishing a lost xenstore watch (ms); doubled each attempt.
pub const WATCH_RESUBSCRIBE_BACKOFF_MS: u64 = 200;
/// Default cap of a recording (`--record-limit`): when the next line would pass it the
/// recording stops with a closing `recording-stopped` line and the watch carries on.
pub const RECORDING_DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Room kept under the recording cap for the closing `recording-stopped` line.
pub const RECORDING_EVENT_RESERVE: u64 = 1024;
/// Distinct marks a binary recording's reader keeps decoders for (each mark frame of a
/// session is one; more are skipped, counted).
pub const BINREC_MAX_MARKS: usize = 4096;
/// Network interfaces `watch --on-packet` captures on at once (a domain's vifs and their
/// `-emu` twins): one thread each.
pub const PACKET_MAX_INTERFACES: usize = 8;
/// Most bytes kept of a captured packet (`--pcap`); without `--pcap` only
/// [`PACKET_TRIGGER_SNAPLEN`] are, enough for the filter's headers.
pub const PACKET_MAX_SNAPLEN: u32 = 65_535;
/// Bytes kept of a packet that only triggers a capture.
pub const PACKET_TRIGGER_SNAPLEN: u32 = 128;
/// Packets queued between the capture threads and the watch: past it a packet is counted
/// as dropped, so a guest flooding its interface holds at most this many packets
/// (x [`PACKET_MAX_SNAPLEN`] bytes: 64 MiB) of the host's memory.
pub const PACKET_QUEUE: usize = 1024;
/// A capture thread's longest wait in libpcap (ms), where `pcap_breakloop` cannot end one.
pub const PACKET_POLL_MS: i32 = 100;
/// The kernel's capture buffer per interface (bytes).
pub const PACKET_KERNEL_BUFFER: i32 = 4 << 20;
/// Sub-buckets per power of two of the latency histogram: percentiles are exact to within
/// 1/16 (6.25 %) in bounded memory (976 counters), however many samples a guest causes.
pub const LATENCY_SUB_BUCKETS: u32 = 16;

// --- Types a guest describes (manifests; also BTF and DWARF tables) ------------------------

/// Largest `sizeof` of any type: no kernel object a mark could name is this large, and sizes
/// drive reads and allocations.
pub const TYPE_MAX_SIZE: u64 = 64 << 20;
/// Deepest nesting of types by value (struct in struct in array ..., typedef chains): what
/// the recursive walks over a validated table may meet. Kernel types nest about 10 deep.
pub const TYPE_MAX_DEPTH: usize = 64;
/// Longest name of a type, member or enumerator, in bytes (C identifiers in the kernel stay
/// under 100; base type names such as `long long unsigned int` are short).
pub const TYPE_MAX_NAME_LEN: usize = 256;
/// Most members of one struct or union (the kernel's largest have a few hundred).
pub const TYPE_MAX_MEMBERS: usize = 1 << 16;
/// Most constants of one enum (the kernel's largest have a few thousand).
pub const TYPE_MAX_ENUMERATORS: usize = 1 << 16;
/// Most parameters of one function type (C guarantees 127; the kernel uses under 20).
pub const TYPE_MAX_PARAMS: usize = 1 << 10;
/// Most dimensions of one array type (C code rarely goes past 3).
pub const TYPE_MAX_DIMS: usize = 32;

// --- Naming a type (`TypeTable::type_name`, `declare`) -------------------------------------

/// Most types visited to spell one type, over every path (pointer targets, function return
/// and parameter types all draw on the same budget). A kernel function pointer with ten
/// parameters takes about 30. Beyond it the name ends in `/* ... */`.
pub const TYPE_NAME_MAX_STEPS: usize = 96;
/// Longest spelling of one type or declaration, in bytes; longer ones are cut and end in
/// `/* ... */`. Real declarations stay under 200 bytes.
pub const TYPE_NAME_MAX_LEN: usize = 1024;

// --- Decoding a manifest (`vmark_proto::decode`) --------------------------------------------

/// Most types in one manifest (the closure of `struct tcp_sock` has about 800 types at
/// pointer depth 1 and 2 600 at depth 3).
pub const MANIFEST_MAX_TYPES: usize = 1 << 18;
/// Most marks in one manifest.
pub const MANIFEST_MAX_MARKS: usize = 4096;
/// Longest module name, kernel release, mark name or symbol, in bytes.
pub const MANIFEST_MAX_NAME_LEN: usize = 256;
/// Longest build id, in bytes.
pub const MANIFEST_MAX_BUILD_ID_LEN: usize = 64;
/// The decoded model of a manifest may take at most this many bytes of memory per byte of
/// payload (plus [`MANIFEST_MODEL_BASE_BYTES`]). Charged before each allocation, as the
/// `size_of` of every element and the bytes of every string; real manifests (every struct
/// of the Debian kernel's `tcp_sock` neighbourhood, pointer depth 1 and 3) need 6 to 10.3
/// (the densest items, pointers and qualifiers, 16 to 21).
pub const MANIFEST_MODEL_BYTES_PER_PAYLOAD_BYTE: u64 = 32;
/// Memory any manifest's model may take regardless of its size (small manifests).
pub const MANIFEST_MODEL_BASE_BYTES: u64 = 64 << 10;
/// Memory no manifest's model may exceed, whatever its size (the largest payload, 4 MiB,
/// would otherwise be allowed 128 MiB).
pub const MANIFEST_MAX_MODEL_BYTES: u64 = 64 << 20;

// --- Compiling and rendering a decode plan (`vmark_host::decode`) ---------------------------

/// Most operations (leaves, opening and closing braces) of one plan: the fields one sample
/// renders. A `struct tcp_sock` takes about 1 000.
pub const PLAN_MAX_OPS: usize = 1 << 20;
/// Most steps the plan compiler takes for one type: every type, member (anonymous ones and
/// skipped bitfields included) and array element visited counts, so types nested by value
/// many times over cannot make compiling exponential while emitting nothing.
pub const PLAN_MAX_VISITS: usize = 1 << 21;
/// Most memory one plan holds (ops, keys, the compiled JSON program, enum tables), charged
/// while compiling.
pub const PLAN_MAX_BYTES: usize = 64 << 20;
/// Deepest nesting the plan compiler follows.
pub const PLAN_MAX_DEPTH: usize = 64;
/// Arrays longer than this render their first elements (scalars: and a count of the rest).
pub const PLAN_MAX_ARRAY_ELEMENTS: u64 = 4096;
/// Most text one decoded sample may render to, JSON or pretty, counted at its widest when
/// the plan is compiled (every struct of the typezoo module, `struct tcp_sock` included,
/// compiles within it: tests/decode_agree.rs): without it a 41-byte manifest found by the
/// fuzzer made every sample tens of MiB of output.
pub const PLAN_MAX_OUTPUT_BYTES: u64 = 16 << 20;
/// Most members looked at to find one member by name (searching through anonymous members),
/// per path segment.
pub const MEMBER_LOOKUP_MAX_VISITS: usize = 1 << 16;

// --- Following pointers (`--follow`) ---------------------------------------------------------

/// Most pointers taken from one value.
pub const FOLLOW_MAX_POINTERS_PER_VALUE: usize = 64;
/// Most values read in one follow.
pub const FOLLOW_MAX_POINTEES: usize = 256;
/// Most bytes read in one follow, all values together.
pub const FOLLOW_MAX_BYTES: u64 = 16 << 20;
/// Most elements of one array looked at for pointers.
pub const FOLLOW_MAX_ARRAY_ELEMENTS: u64 = 64;
/// Deepest nesting of structs and arrays looked into for pointers.
pub const FOLLOW_MAX_NESTING: u32 = 32;
/// Most types, members and elements visited to find the pointers of one value.
pub const FOLLOW_MAX_SLOT_VISITS: usize = 1 << 16;
/// Most bytes read behind a `char *`.
pub const FOLLOW_MAX_STRING: usize = 256;

// --- Layouts (`vmark inspect --type`) -------------------------------------------------------

/// Most rows (members, with anonymous ones expanded inline) of one flattened layout. The
/// kernel's `struct sk_buff` has about 150.
pub const LAYOUT_MAX_ROWS: usize = 1 << 14;

// --- Introspection over guest memory (host/src/introspect/) ---------------------------------

/// Most bytes of guest memory one search for kallsyms (or for the kernel banner) scans: a
/// 1 TiB guest, far beyond any dump vmark is given, so a scan always ends.
pub const KALLSYMS_MAX_SCAN_BYTES: u64 = 1 << 40;
/// Most token-table signature hits examined as kallsyms candidates in one search. A real
/// kernel image holds about six hits (one of them the table); the rest are for planted or
/// stale copies in other memory, every one of which is tried before the search fails.
pub const KALLSYMS_MAX_CANDIDATES: usize = 256;
/// Bytes read before a candidate's token table (offsets of Linux ≤ 6.3, num_syms, names,
/// markers): a kernel with 4M symbols fits.
pub const KALLSYMS_WINDOW_BEFORE: u64 = 32 << 20;
/// Bytes read after a candidate's token index (the offsets and relative base of Linux ≥
/// 6.4, 4 bytes per symbol): 4M symbols fit.
pub const KALLSYMS_WINDOW_AFTER: u64 = (16 << 20) + 4096;
/// Most bytes read into candidate windows in one kallsyms search, all candidates together.
pub const KALLSYMS_MAX_READ_BYTES: u64 = 1 << 30;
/// Most steps (positions tried for `kallsyms_num_syms`, markers read, name entries walked)
/// one candidate may take. Debian's 6.1 kernel takes 0.4 M, its 6.12 kernel 0.6 M.
pub const KALLSYMS_MAX_STEPS: u64 = 1 << 24;
/// Longest decoded symbol name (the kernel's `KSYM_NAME_LEN`, type letter included).
pub const KALLSYMS_MAX_NAME_LEN: usize = 512;
/// Most bytes of decoded names of one kallsyms table (a real kernel has about 5 MiB).
pub const KALLSYMS_MAX_NAME_BYTES: usize = 64 << 20;
/// Most hits of the kernel banner (`Linux version `) examined to find the page tables.
pub const KERNEL_MAX_BANNER_HITS: usize = 64;
/// Most tasks walked on `init_task.tasks` (the kernel's `PID_MAX_LIMIT` is 4M, but one
/// list node per thread-group leader; a longer list is reported as over budget).
pub const KERNEL_MAX_TASKS: usize = 1 << 20;
/// Most modules walked on the `modules` list.
pub const KERNEL_MAX_MODULES: usize = 1 << 14;
/// Most symbols read from one module's `mod_kallsyms` (`num_symtab` above is an error for
/// that module).
pub const KERNEL_MAX_MODULE_SYMBOLS: u64 = 1 << 20;
/// Most module symbols read in one walk of every module (`vmark sym`, `read --source`).
pub const KERNEL_MAX_MODULE_SYMBOLS_TOTAL: u64 = 1 << 22;
/// Longest module symbol name read from a module's string table (`KSYM_NAME_LEN`).
pub const KERNEL_MAX_SYMBOL_NAME: usize = 512;
/// Largest BTF blob read from guest memory (a 6.x kernel's is about 6 MiB).
pub const KERNEL_MAX_BTF_BYTES: u64 = 64 << 20;
/// Largest file read for DWARF types (`--btf`/`--vmlinux` without `.BTF`; a `-dbg` vmlinux
/// is under 1 GiB). A file the user names, not guest memory, but read whole.
pub const KERNEL_MAX_DWARF_FILE_BYTES: u64 = 4 << 30;
/// Physical memory after the kallsyms tables searched, page by page, for the kernel's
/// page directory when no vCPU state names it (a shared-RAM file of a kernel without data
/// symbols).
pub const KERNEL_MAX_ROOT_SCAN_BYTES: u64 = 64 << 20;
/// Kernel data scanned, from the end of the kernel's text, for `init_task` and the module
/// list head when the kernel's kallsyms has no data symbols (no `CONFIG_KALLSYMS_ALL`).
pub const KERNEL_MAX_DATA_SCAN_BYTES: u64 = 96 << 20;
/// Candidates checked in that scan: words that could be the pointer sought (each costs a
/// read or a few).
pub const KERNEL_MAX_DATA_SCAN_CANDIDATES: u64 = 1 << 22;
/// A module's memory scanned for vmark's records and manifest when its kallsyms does not
/// name them (no `CONFIG_KALLSYMS_ALL`).
pub const KERNEL_MAX_MODULE_SCAN_BYTES: u64 = 64 << 20;
/// All modules' memory scanned so, in one search.
pub const KERNEL_MAX_MODULE_SCAN_TOTAL: u64 = 512 << 20;
/// Words with a record's or the manifest's magic examined in that search (each costs a
/// read or two; a real module has one per mark and one manifest).
pub const KERNEL_MAX_MODULE_SCAN_HITS: u64 = 1 << 16;
/// Longest NUL-terminated string read by virtual address.
pub const VMEM_MAX_CSTRING: usize = 4096;
/// Most BTF type records accepted.
pub const BTF_MAX_TYPES: usize = 1 << 21;
/// Longest chain of BTF modifiers, typedefs, type tags or nested arrays followed.
pub const BTF_MAX_CHAIN: usize = 32;
/// Longest BTF string looked at for its NUL (the kernel's own BTF checks use
/// `KSYM_NAME_LEN`, 512): bounds the cost of each of the blob's name references.
pub const BTF_MAX_NAME_LEN: usize = 512;
/// Most members visited (anonymous members looked through) to find one member by name.
pub const BTF_MAX_MEMBER_VISITS: usize = 1 << 16;
/// Largest System.map read from a file given with `--system-map` (a distribution
/// kernel's is about 6 MiB; the bound keeps a wrong file from being read whole).
pub const KERNEL_MAX_SYSTEM_MAP_BYTES: u64 = 256 << 20;
/// KASLR slots tried when relocating a System.map or vmlinux onto the kernel in memory:
/// the x86 kernel image lives in a 1 GiB window and moves in 2 MiB steps, so 512 slots
/// cover every slide with the default alignment.
pub const KERNEL_MAX_KASLR_SLOTS: u64 = 512;
/// Most symbols of a System.map or vmlinux that disagree with the guest's kallsyms named
/// in the error (the rest are counted).
pub const KERNEL_MAX_REPORTED_MISMATCHES: usize = 3;
/// Frames a snapshot maps per call (4 MiB): large batches are what makes it fast, and
/// the buffer it copies through is this size.
pub const SNAPSHOT_BATCH_FRAMES: usize = 1024;
/// Most `PT_LOAD` segments (runs of present frames) of a snapshot: an ELF's `e_phnum` is
/// 16 bits, and a guest whose memory is in more runs than this is refused, not guessed.
pub const SNAPSHOT_MAX_SEGMENTS: usize = 60_000;
/// Most vCPUs whose registers a snapshot records.
pub const SNAPSHOT_MAX_VCPUS: usize = 512;
/// Longest `VMCOREINFO` text taken from a guest (Linux's `VMCOREINFO_BYTES` is a page).
pub const SNAPSHOT_MAX_VMCOREINFO: usize = 4096;
/// Most entries of a Xen PV guest's P2M read for a snapshot (a 64 GiB guest).
pub const SNAPSHOT_MAX_P2M_ENTRIES: u64 = 1 << 24;
/// Most frames a snapshot tries (1 TiB of guest-physical space): the ranges come from the
/// guest, and each costs Xen work while the domain is paused.
pub const SNAPSHOT_MAX_FRAMES_TRIED: u64 = 1 << 28;
/// Most entries of a guest's e820 memory map read (Linux's `E820_MAX_ENTRIES` is 128 plus
/// 3 per NUMA node).
pub const SNAPSHOT_MAX_E820_ENTRIES: u64 = 8192;
/// Most bytes of a core file's notes read, all `PT_NOTE` segments together (they are read
/// whole): a PV snapshot's P2M note of [`SNAPSHOT_MAX_P2M_ENTRIES`] pairs, and 1 MiB for
/// the rest.
pub const CORE_MAX_NOTES_BYTES: u64 = 16 * SNAPSHOT_MAX_P2M_ENTRIES + (1 << 20);
