//! node_exporter's `xfs` collector: per-filesystem XFS runtime statistics from
//! `<sysfs>/fs/xfs/<device>/stats/stats` (Linux 4.4+), as counters.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use super::util::list;
use crate::config::HostConfig;
use crate::metrics::{Families, Kind};

/// (stats line, index, family suffix, help).
const FAMILIES: [(&str, usize, &str, &str); 39] = [
    ("extent_alloc", 0, "extent_allocation_extents_allocated_total", "Number of extents allocated for a filesystem."),
    ("extent_alloc", 1, "extent_allocation_blocks_allocated_total", "Number of blocks allocated for a filesystem."),
    ("extent_alloc", 2, "extent_allocation_extents_freed_total", "Number of extents freed for a filesystem."),
    ("extent_alloc", 3, "extent_allocation_blocks_freed_total", "Number of blocks freed for a filesystem."),
    ("abt", 0, "allocation_btree_lookups_total", "Number of allocation B-tree lookups for a filesystem."),
    ("abt", 1, "allocation_btree_compares_total", "Number of allocation B-tree compares for a filesystem."),
    ("abt", 2, "allocation_btree_records_inserted_total", "Number of allocation B-tree records inserted for a filesystem."),
    ("abt", 3, "allocation_btree_records_deleted_total", "Number of allocation B-tree records deleted for a filesystem."),
    ("blk_map", 0, "block_mapping_reads_total", "Number of block map for read operations for a filesystem."),
    ("blk_map", 1, "block_mapping_writes_total", "Number of block map for write operations for a filesystem."),
    ("blk_map", 2, "block_mapping_unmaps_total", "Number of block unmaps (deletes) for a filesystem."),
    ("blk_map", 3, "block_mapping_extent_list_insertions_total", "Number of extent list insertions for a filesystem."),
    ("blk_map", 4, "block_mapping_extent_list_deletions_total", "Number of extent list deletions for a filesystem."),
    ("blk_map", 5, "block_mapping_extent_list_lookups_total", "Number of extent list lookups for a filesystem."),
    ("blk_map", 6, "block_mapping_extent_list_compares_total", "Number of extent list compares for a filesystem."),
    ("bmbt", 0, "block_map_btree_lookups_total", "Number of block map B-tree lookups for a filesystem."),
    ("bmbt", 1, "block_map_btree_compares_total", "Number of block map B-tree compares for a filesystem."),
    ("bmbt", 2, "block_map_btree_records_inserted_total", "Number of block map B-tree records inserted for a filesystem."),
    ("bmbt", 3, "block_map_btree_records_deleted_total", "Number of block map B-tree records deleted for a filesystem."),
    ("dir", 0, "directory_operation_lookup_total", "Number of file name directory lookups which miss the operating systems directory name lookup cache."),
    ("dir", 1, "directory_operation_create_total", "Number of times a new directory entry was created for a filesystem."),
    ("dir", 2, "directory_operation_remove_total", "Number of times an existing directory entry was created for a filesystem."),
    ("dir", 3, "directory_operation_getdents_total", "Number of times the directory getdents operation was performed for a filesystem."),
    ("ig", 0, "inode_operation_attempts_total", "Number of times the OS looked for an XFS inode in the inode cache."),
    ("ig", 1, "inode_operation_found_total", "Number of times the OS looked for and found an XFS inode in the inode cache."),
    ("ig", 2, "inode_operation_recycled_total", "Number of times the OS found an XFS inode in the cache, but could not use it as it was being recycled."),
    ("ig", 3, "inode_operation_missed_total", "Number of times the OS looked for an XFS inode in the cache, but did not find it."),
    ("ig", 4, "inode_operation_duplicates_total", "Number of times the OS tried to add a missing XFS inode to the inode cache, but found it had already been added by another process."),
    ("ig", 5, "inode_operation_reclaims_total", "Number of times the OS reclaimed an XFS inode from the inode cache to free memory for another purpose."),
    ("ig", 6, "inode_operation_attribute_changes_total", "Number of times the OS explicitly changed the attributes of an XFS inode."),
    ("rw", 1, "read_calls_total", "Number of read(2) system calls made to files in a filesystem."),
    ("rw", 0, "write_calls_total", "Number of write(2) system calls made to files in a filesystem."),
    ("vnodes", 0, "vnode_active_total", "Number of vnodes not on free lists for a filesystem."),
    ("vnodes", 1, "vnode_allocate_total", "Number of times vn_alloc called for a filesystem."),
    ("vnodes", 2, "vnode_get_total", "Number of times vn_get called for a filesystem."),
    ("vnodes", 3, "vnode_hold_total", "Number of times vn_hold called for a filesystem."),
    ("vnodes", 4, "vnode_release_total", "Number of times vn_rele called for a filesystem."),
    ("vnodes", 5, "vnode_reclaim_total", "Number of times vn_reclaim called for a filesystem."),
    ("vnodes", 6, "vnode_remove_total", "Number of times vn_remove called for a filesystem."),
];

/// How many values each line the procfs library checks must have.
fn expected(label: &str, n: usize) -> bool {
    match label {
        "extent_alloc" | "abt" | "bmbt" | "dir" | "attr" => n == 4,
        "blk_map" | "ig" => n == 7,
        "trans" | "icluster" | "xpc" => n == 3,
        "log" => n == 5,
        "push_ail" => n == 10,
        "xstrat" | "rw" => n == 2,
        "vnodes" => n == 7 || n == 8,
        "buf" => n == 9,
        "abtb2" | "abtc2" | "bmbt2" | "ibt2" => n == 15,
        "qm" => n == 8 || n == 9,
        "debug" => n == 1,
        _ => true,
    }
}

/// line label → values, as the procfs library parses stats (u32 values, u64 for `xpc`).
pub fn parse_stats(text: &str) -> anyhow::Result<HashMap<String, Vec<f64>>> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 2 {
            continue;
        }
        let values = f[1..]
            .iter()
            .map(|v| {
                if f[0] == "xpc" {
                    v.parse::<u64>()
                        .map(|n| n as f64)
                        .map_err(anyhow::Error::from)
                } else {
                    v.parse::<u32>().map(f64::from).map_err(anyhow::Error::from)
                }
            })
            .collect::<anyhow::Result<Vec<f64>>>()
            .with_context(|| format!("XFS stats line {line:?}"))?;
        anyhow::ensure!(
            expected(f[0], values.len()),
            "incorrect number of values for XFS {} stats: {}",
            f[0],
            values.len()
        );
        out.insert(f[0].to_string(), values);
    }
    Ok(out)
}

pub struct Xfs {
    sysfs_root: PathBuf,
}

impl Xfs {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            sysfs_root: config.sysfs_root.clone(),
        }
    }
}

impl Source for Xfs {
    fn name(&self) -> &'static str {
        "xfs"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let base = self.sysfs_root.join("fs/xfs");
        let mut out = Families::default();
        for device in list(&base).unwrap_or_default() {
            let path = base.join(&device).join("stats/stats");
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("failed to retrieve XFS stats: {}", path.display()))?;
            let stats = parse_stats(&text).context("failed to retrieve XFS stats")?;
            for (line, i, suffix, help) in FAMILIES {
                let v = stats
                    .get(line)
                    .and_then(|v| v.get(i))
                    .copied()
                    .unwrap_or(0.0);
                out.add(
                    Kind::Counter,
                    &format!("node_xfs_{suffix}"),
                    help,
                    &[("device", &device)],
                    v,
                );
            }
        }
        out.write(enc)?;
        Ok(())
    }
}
