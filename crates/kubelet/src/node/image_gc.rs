//! Image garbage collection, as upstream's image GC manager does it: when the image
//! filesystem's usage reaches `--image-gc-high-threshold` percent, delete images no container
//! uses, least recently used first (then oldest detected), until usage is down to
//! `--image-gc-low-threshold` percent. An image first seen less than
//! `--minimum-image-ttl-duration` ago is kept (it may have just been pulled for a pod), and so
//! are pinned images: those imported from `--image-archive-dir`, which an air-gapped node could
//! not pull again. Disk figures come through [`DiskStats`] so tests can drive it with a fake
//! disk and the fake runtime.
//!
//! Under disk pressure the eviction manager asks for more through [`NodeReclaimer`]:
//! [`ImageGc::delete_unused_images`] deletes every image that may go, thresholds aside.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::eviction::{NodeReclaimer, ReclaimError};
use crate::runtime::{normalize_image, ContainerRuntime, RuntimeError};

/// How often the collector runs (upstream `ImageGCPeriod`).
pub const IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);
/// Default `--minimum-image-ttl-duration`.
pub const MINIMUM_IMAGE_AGE: Duration = Duration::from_secs(120);

/// Capacity and free bytes of the filesystem images live on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// Total bytes.
    pub capacity: u64,
    /// Bytes available.
    pub available: u64,
}

/// Where disk usage comes from.
pub trait DiskStats: Send + Sync + 'static {
    /// The current usage; `None` when it cannot be read.
    fn usage(&self) -> Option<DiskUsage>;
}

/// `statvfs` of a directory on the image filesystem.
#[derive(Clone, Debug)]
pub struct StatvfsDisk(pub PathBuf);

impl DiskStats for StatvfsDisk {
    fn usage(&self) -> Option<DiskUsage> {
        let stat = nix::sys::statvfs::statvfs(&self.0).ok()?;
        let block = stat.fragment_size();
        Some(DiskUsage {
            capacity: stat.blocks().saturating_mul(block),
            available: stat.blocks_available().saturating_mul(block),
        })
    }
}

/// Why the thresholds are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ImageGcError {
    /// Thresholds out of range or low above high.
    #[error("invalid image GC thresholds: high {high}, low {low} (want 0 <= low <= high <= 100)")]
    Thresholds {
        /// `--image-gc-high-threshold`.
        high: u8,
        /// `--image-gc-low-threshold`.
        low: u8,
    },
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// What one collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcOutcome {
    /// Usage in percent before collecting.
    pub usage_percent: u64,
    /// Bytes the collector wanted to free (0: below the high threshold).
    pub wanted: u64,
    /// Bytes freed (sum of the deleted images' sizes).
    pub freed: u64,
    /// The images deleted (every name of each).
    pub deleted: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    first_detected: Instant,
    last_used: Option<Instant>,
}

/// The image garbage collector.
pub struct ImageGc {
    runtime: Arc<dyn ContainerRuntime>,
    disk: Arc<dyn DiskStats>,
    high: u8,
    low: u8,
    min_age: Duration,
    seen: Mutex<HashMap<String, Seen>>,
    pinned: Mutex<HashSet<String>>,
}

impl ImageGc {
    /// A collector between `high` and `low` percent usage.
    pub fn new(
        runtime: Arc<dyn ContainerRuntime>,
        disk: Arc<dyn DiskStats>,
        high: u8,
        low: u8,
    ) -> Result<Self, ImageGcError> {
        if high > 100 || low > high {
            return Err(ImageGcError::Thresholds { high, low });
        }
        Ok(Self {
            runtime,
            disk,
            high,
            low,
            min_age: MINIMUM_IMAGE_AGE,
            seen: Mutex::new(HashMap::new()),
            pinned: Mutex::new(HashSet::new()),
        })
    }

    /// Keeps images first seen less than `min_age` ago (`--minimum-image-ttl-duration`).
    pub fn with_minimum_age(mut self, min_age: Duration) -> Self {
        self.min_age = min_age;
        self
    }

    /// Never collects the images with these names (images imported from archives).
    pub fn pin(&self, names: impl IntoIterator<Item = String>) {
        let mut pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        pinned.extend(names.into_iter().map(|n| normalize_image(&n)));
    }

    fn is_pinned(&self, image: &crate::runtime::ImageInfo) -> bool {
        let pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        image.names.iter().any(|n| pinned.contains(n))
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes which images exist and which are in use (by digest); returns the images and the
    /// names of the images containers use.
    async fn detect(&self) -> Result<(Vec<crate::runtime::ImageInfo>, Vec<String>), RuntimeError> {
        let images = self.runtime.list_images().await?;
        let used: Vec<String> = self
            .runtime
            .list_containers()
            .await?
            .into_iter()
            .map(|c| normalize_image(&c.image))
            .collect();
        let now = Instant::now();
        let mut seen = self.seen();
        seen.retain(|digest, _| images.iter().any(|i| &i.digest == digest));
        for image in &images {
            let entry = seen.entry(image.digest.clone()).or_insert(Seen {
                first_detected: now,
                last_used: None,
            });
            if image.names.iter().any(|n| used.contains(n)) {
                entry.last_used = Some(now);
            }
        }
        Ok((images, used))
    }

    /// The image filesystem's usage and its share of the capacity in percent; `None` when it
    /// cannot be read.
    fn disk_usage(&self) -> Option<(DiskUsage, u64)> {
        let usage = self.disk.usage().filter(|u| u.capacity > 0)?;
        let used = usage.capacity.saturating_sub(usage.available);
        Some((usage, used * 100 / usage.capacity))
    }

    /// One collection (see the module docs).
    pub async fn collect(&self) -> Result<GcOutcome, ImageGcError> {
        let (images, in_use) = self.detect().await?;
        let Some((usage, usage_percent)) = self.disk_usage() else {
            return Ok(GcOutcome::default());
        };
        let mut outcome = GcOutcome {
            usage_percent,
            ..Default::default()
        };
        if usage_percent < u64::from(self.high) {
            return Ok(outcome);
        }
        let target_available = usage.capacity * (100 - u64::from(self.low)) / 100;
        outcome.wanted = target_available.saturating_sub(usage.available);
        self.free_space(images, &in_use, &mut outcome).await?;
        if outcome.freed < outcome.wanted {
            tracing::warn!(
                wanted = outcome.wanted,
                freed = outcome.freed,
                "image garbage collection could not free enough space"
            );
        }
        Ok(outcome)
    }

    /// Deletes every image that may go, whatever the thresholds say: not used by any
    /// container, not pinned, and first seen at least `--minimum-image-ttl-duration` ago (what
    /// upstream's eviction manager asks of image GC under disk pressure). `wanted` is
    /// `u64::MAX`: as much as possible.
    pub async fn delete_unused_images(&self) -> Result<GcOutcome, ImageGcError> {
        let (images, in_use) = self.detect().await?;
        let mut outcome = GcOutcome {
            usage_percent: self.disk_usage().map_or(0, |(_, percent)| percent),
            wanted: u64::MAX,
            ..Default::default()
        };
        self.free_space(images, &in_use, &mut outcome).await?;
        Ok(outcome)
    }

    /// Deletes unused, unpinned images old enough, least recently used first (then oldest
    /// detected), until `outcome.wanted` bytes are freed; records them in `outcome`.
    async fn free_space(
        &self,
        images: Vec<crate::runtime::ImageInfo>,
        in_use: &[String],
        outcome: &mut GcOutcome,
    ) -> Result<(), ImageGcError> {
        let now = Instant::now();
        let images: Vec<_> = images
            .into_iter()
            .filter(|i| !i.names.iter().any(|n| in_use.contains(n)) && !self.is_pinned(i))
            .collect();
        let mut candidates: Vec<(Seen, crate::runtime::ImageInfo)> = {
            let seen = self.seen();
            images
                .into_iter()
                .filter_map(|i| seen.get(&i.digest).map(|s| (*s, i)))
                .filter(|(s, _)| now.duration_since(s.first_detected) >= self.min_age)
                .collect()
        };
        candidates.sort_by_key(|(s, _)| (s.last_used, s.first_detected));
        for (_, image) in candidates {
            if outcome.freed >= outcome.wanted {
                break;
            }
            for name in &image.names {
                self.runtime.remove_image(name).await?;
            }
            tracing::info!(images = ?image.names, size = image.size, "image garbage collected");
            outcome.freed += image.size;
            outcome.deleted.extend(image.names);
            self.seen().remove(&image.digest);
        }
        Ok(())
    }

    /// Collects every `period` until the task is aborted.
    pub async fn run(self: Arc<Self>, period: Duration) {
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            match self.collect().await {
                Ok(outcome) if !outcome.deleted.is_empty() => {
                    tracing::info!(
                        freed = outcome.freed,
                        deleted = outcome.deleted.len(),
                        "image garbage collection done"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "image garbage collection failed"),
            }
        }
    }
}

/// Disk pressure: the images and the node's files share one filesystem here (the stats
/// report the same one for `nodefs` and `imagefs`), so unused images go for either signal.
#[async_trait::async_trait]
impl NodeReclaimer for ImageGc {
    async fn reclaim_disk(&self) -> Result<u64, ReclaimError> {
        let outcome = self
            .delete_unused_images()
            .await
            .map_err(ReclaimError::Images)?;
        if !outcome.deleted.is_empty() {
            tracing::info!(
                freed = outcome.freed,
                deleted = outcome.deleted.len(),
                "unused images deleted to relieve disk pressure"
            );
        }
        Ok(outcome.freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;
    use crate::runtime::ContainerConfig;

    struct FakeDisk(Mutex<DiskUsage>);

    impl DiskStats for FakeDisk {
        fn usage(&self) -> Option<DiskUsage> {
            self.0.lock().ok().map(|u| *u)
        }
    }

    /// Creates container `name` of `image` in the fake runtime; returns its id.
    async fn container_of(runtime: &FakeRuntime, name: &str, image: &str) -> String {
        runtime
            .create_container(&ContainerConfig {
                name: name.into(),
                image: image.into(),
                ..Default::default()
            })
            .await
            .expect("create")
    }

    fn disk(capacity: u64, available: u64) -> Arc<FakeDisk> {
        Arc::new(FakeDisk(Mutex::new(DiskUsage {
            capacity,
            available,
        })))
    }

    async fn sizes(runtime: &FakeRuntime) -> Vec<String> {
        let mut names: Vec<String> = runtime
            .list_images()
            .await
            .expect("list")
            .into_iter()
            .flat_map(|i| i.names)
            .collect();
        names.sort();
        names
    }

    #[tokio::test(start_paused = true)]
    async fn below_the_high_threshold_nothing_is_deleted() {
        let runtime = Arc::new(FakeRuntime::new());
        runtime.add_image("a:1");
        let gc = ImageGc::new(runtime.clone(), disk(1000, 200), 85, 80).expect("gc");
        let outcome = gc.collect().await.expect("collect");
        assert_eq!(outcome.usage_percent, 80);
        assert!(outcome.deleted.is_empty());
        assert_eq!(sizes(&runtime).await.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unused_images_go_least_recently_used_first_down_to_the_low_threshold() {
        let runtime = Arc::new(FakeRuntime::new());
        for image in ["old:1", "mid:1", "new:1", "busy:1"] {
            runtime.add_image(image);
        }
        let size = runtime.list_images().await.expect("list")[0].size;
        assert!(size > 0);
        let disk = disk(size * 10, size * 10);
        let gc = ImageGc::new(runtime.clone(), disk.clone(), 85, 80).expect("gc");
        // Detection order sets the age: old, then mid, then new.
        for image in ["old:1", "mid:1", "new:1"] {
            let id = container_of(&runtime, "c", image).await;
            gc.detect().await.expect("detect");
            runtime.remove_container(&id).await.expect("remove");
            tokio::time::advance(Duration::from_secs(60)).await;
        }
        container_of(&runtime, "busy", "busy:1").await;
        // A full disk; the low threshold wants 20 % of it free: two images' worth.
        *disk.0.lock().expect("lock") = DiskUsage {
            capacity: size * 10,
            available: 0,
        };
        let outcome = gc.collect().await.expect("collect");
        assert_eq!(outcome.usage_percent, 100);
        assert_eq!(outcome.wanted, size * 2);
        assert_eq!(
            outcome.deleted,
            vec![
                "docker.io/library/old:1".to_string(),
                "docker.io/library/mid:1".to_string()
            ]
        );
        assert_eq!(
            sizes(&runtime).await,
            vec![
                "docker.io/library/busy:1".to_string(),
                "docker.io/library/new:1".to_string()
            ]
        );
        // The image in use is never deleted, even when more is wanted.
        *disk.0.lock().expect("lock") = DiskUsage {
            capacity: size * 10,
            available: 0,
        };
        let outcome = gc.collect().await.expect("collect");
        assert_eq!(outcome.deleted, vec!["docker.io/library/new:1".to_string()]);
        assert_eq!(
            sizes(&runtime).await,
            vec!["docker.io/library/busy:1".to_string()]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn new_and_pinned_images_are_kept() {
        let runtime = Arc::new(FakeRuntime::new());
        for image in ["archived:1", "pulled:1"] {
            runtime.add_image(image);
        }
        let size = runtime.list_images().await.expect("list")[0].size;
        let disk = disk(size * 10, 0);
        let gc = ImageGc::new(runtime.clone(), disk, 85, 80).expect("gc");
        gc.pin(["archived:1".to_string()]);
        // Both were just detected: neither goes.
        let outcome = gc.collect().await.expect("collect");
        assert!(outcome.deleted.is_empty(), "{outcome:?}");
        tokio::time::advance(MINIMUM_IMAGE_AGE).await;
        // Old enough now, but the pinned one stays whatever the disk says.
        let outcome = gc.collect().await.expect("collect");
        assert_eq!(
            outcome.deleted,
            vec!["docker.io/library/pulled:1".to_string()]
        );
        assert_eq!(
            sizes(&runtime).await,
            vec!["docker.io/library/archived:1".to_string()]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reclaiming_deletes_every_unused_old_unpinned_image_whatever_the_thresholds() {
        let runtime = Arc::new(FakeRuntime::new());
        for image in ["old:1", "older:1", "archived:1", "busy:1"] {
            runtime.add_image(image);
        }
        let size = runtime.list_images().await.expect("list")[0].size;
        // Plenty of room: the thresholds alone would delete nothing.
        let gc = ImageGc::new(runtime.clone(), disk(size * 100, size * 90), 85, 80).expect("gc");
        gc.pin(["archived:1".to_string()]);
        container_of(&runtime, "busy", "busy:1").await;
        assert_eq!(gc.collect().await.expect("collect").freed, 0);
        // Too young yet: nothing goes.
        assert_eq!(gc.reclaim_disk().await.expect("reclaim"), 0);
        tokio::time::advance(MINIMUM_IMAGE_AGE).await;
        runtime.add_image("fresh:1");
        assert_eq!(gc.reclaim_disk().await.expect("reclaim"), size * 2);
        assert_eq!(
            sizes(&runtime).await,
            vec![
                "docker.io/library/archived:1".to_string(),
                "docker.io/library/busy:1".to_string(),
                "docker.io/library/fresh:1".to_string()
            ]
        );
    }

    #[test]
    fn thresholds_are_checked() {
        let runtime = Arc::new(FakeRuntime::new());
        assert!(ImageGc::new(runtime.clone(), disk(1, 1), 80, 85).is_err());
        assert!(ImageGc::new(runtime, disk(1, 1), 101, 85).is_err());
    }
}
