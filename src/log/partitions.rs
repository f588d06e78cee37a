//! The event log as the server sees it: one or more partitions, each an `EventLog` with its
//! own sequence space. The embedded engine has one; the Kafka engine one per topic
//! partition. A key (the instance) always maps to the same partition, so one instance's
//! events are in one partition, in order.

use std::sync::Arc;

use super::{EventLog, LogStats};

/// Bits of a sequence below the partition number: partition `p`'s records have sequences
/// `(p << 48) + 1 ..`, so sequences are unique across partitions and partition 0 numbers
/// from 1, like a log of one partition.
pub const PARTITION_SHIFT: u32 = 48;

/// The partition a sequence belongs to.
pub fn partition_of(sequence: u64) -> usize {
    (sequence >> PARTITION_SHIFT) as usize
}

/// The sequence just below partition `p`'s first record.
pub fn partition_base(p: usize) -> u64 {
    (p as u64) << PARTITION_SHIFT
}

/// The partitions of the event log.
#[derive(Clone)]
pub struct EventPartitions {
    partitions: Vec<Arc<dyn EventLog>>,
}

impl EventPartitions {
    /// A log of one partition (the embedded engine).
    pub fn single(log: Arc<dyn EventLog>) -> EventPartitions {
        EventPartitions {
            partitions: vec![log],
        }
    }

    /// Several partitions; index = partition number, whose sequences start after
    /// [`partition_base`]. `None` when there are none.
    pub fn new(partitions: Vec<Arc<dyn EventLog>>) -> Option<EventPartitions> {
        (!partitions.is_empty()).then_some(EventPartitions { partitions })
    }

    /// How many partitions.
    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    /// Always false: a log has at least one partition.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Partition `p`.
    pub fn get(&self, p: usize) -> Option<&Arc<dyn EventLog>> {
        self.partitions.get(p)
    }

    /// Every partition, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn EventLog>> {
        self.partitions.iter()
    }

    /// The partition number of a key. CRC32C, not the std hasher: every process (and every
    /// build) must agree on it.
    pub fn index_for(&self, key: &str) -> usize {
        crc32c::crc32c(key.as_bytes()) as usize % self.partitions.len().max(1)
    }

    /// The partition a key's records go to.
    pub fn for_key(&self, key: &str) -> &Arc<dyn EventLog> {
        &self.partitions[self.index_for(key)]
    }

    /// The partition whose sequence space holds `sequence`, if it exists.
    pub fn for_sequence(&self, sequence: u64) -> Option<&Arc<dyn EventLog>> {
        self.partitions.get(partition_of(sequence))
    }

    /// Where a new subscription starts: the current end. With several partitions this is
    /// partition 0's end; see [`EventPartitions::start_positions`] for the others.
    pub fn next_sequence(&self) -> u64 {
        self.partitions[0].next_sequence()
    }

    /// Every partition's end, for a new subscription to start at in each; empty with one
    /// partition, where `next_sequence` says it all.
    pub fn start_positions(&self) -> Vec<u64> {
        if self.partitions.len() == 1 {
            return Vec::new();
        }
        self.partitions.iter().map(|p| p.next_sequence()).collect()
    }

    /// The first sequence of the partition after the one holding `sequence` (a scan over
    /// every partition goes on there), if there is one.
    pub fn next_partition_start(&self, sequence: u64) -> Option<u64> {
        let next = partition_of(sequence) + 1;
        (next < self.partitions.len()).then_some((next as u64) << PARTITION_SHIFT)
    }

    /// Summed sizes (sequences are partition 0's).
    pub fn stats(&self) -> LogStats {
        let mut total = self.partitions[0].stats();
        for p in &self.partitions[1..] {
            let s = p.stats();
            total.bytes += s.bytes;
            total.segments += s.segments;
        }
        total
    }
}
