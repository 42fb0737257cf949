//! The process allocator (mimalloc, `main.rs`) must not ask the kernel for
//! transparent huge pages: where THP is `madvise` (a common default) each
//! 2 MiB region it touches then counts whole in RSS, and `bench proxy`'s
//! idle case charged that to the tunnels: 26 KB per idle tls+mux tunnel
//! instead of the 14.6 KB its heap and sockets cost (docs/benchmarks.md).

/// Bytes of transparent huge pages this process holds (smaps_rollup).
fn anon_huge_pages() -> Option<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = rollup.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether the kernel gives huge pages only to regions that ask for them
/// (`always` gives them to every large enough region, asked or not: no
/// allocator setting changes that, so there is nothing to check).
fn thp_on_request() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .map(|mode| mode.contains("[madvise]"))
        .unwrap_or(false)
}

#[test]
fn the_allocator_asks_for_no_transparent_huge_pages() {
    if !thp_on_request() {
        eprintln!("transparent huge pages are not in madvise mode here: nothing to check");
        return;
    }
    // 64 MiB in 1 MiB blocks, one byte written per 4 KiB page: every page
    // of the allocator's arena in use is touched, as a busy proxy does.
    let blocks: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            let mut block = vec![0u8; 1 << 20];
            for page in block.chunks_mut(4096) {
                page[0] = i as u8;
            }
            block
        })
        .collect();
    let huge = anon_huge_pages().expect("/proc/self/smaps_rollup has AnonHugePages");
    assert_eq!(
        huge, 0,
        "the allocator's arena is backed by {huge} bytes of transparent huge pages"
    );
    drop(blocks);
}
