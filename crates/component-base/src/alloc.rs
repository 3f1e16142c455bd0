//! The memory allocator of the long-running components: jemalloc instead of glibc's malloc.
//!
//! At 300 pod creates per second a third of the apiserver's CPU (and of the scheduler's) went
//! to glibc's allocator (`_int_malloc`, `malloc_consolidate`, frees). Each component binary
//! names it once with [`global_allocator!`].

pub use tikv_jemallocator::Jemalloc;

/// Declares jemalloc the binary's global allocator (in the binary's `main.rs`).
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::alloc::Jemalloc = $crate::alloc::Jemalloc;
    };
}
