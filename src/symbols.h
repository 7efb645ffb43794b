/* SPDX-License-Identifier: MIT */
/* Link names of the library's internal globals: every one carries the ao_gpl_ prefix. */
/*
 * The static archive cannot hide symbols the way the shared library does
 * (visibility and the version script act only at shared link time), so any
 * non-static function or variable named here with its short name would
 * collide with a client's own global of that name: a program defining
 * central_free would fail to link against libatomic_ops_gpl.a.  Each
 * internal global therefore keeps its short name in the source and gets
 * the prefix through one macro below.  internal.h includes this first, so
 * every declaration and definition sees the same link name.
 *
 * Adding a non-static function or variable in src/: add a line here, in
 * its file's group.  tests/check_exports.sh (make check) lists any global
 * of the archive that is neither public AO_* API nor prefixed ao_gpl_.
 * Names that already start with ao_gpl_ (ao_gpl_tcache...) need no line.
 */
#ifndef AO_GPL_SYMBOLS_H
#define AO_GPL_SYMBOLS_H

/* os_memory.c */
#define os_enable_mmap ao_gpl_os_enable_mmap
#define os_mmap_enabled ao_gpl_os_mmap_enabled
#define os_map_aligned ao_gpl_os_map_aligned
#define os_unmap ao_gpl_os_unmap
#define os_unmap_tail ao_gpl_os_unmap_tail
#define os_grow_in_place ao_gpl_os_grow_in_place
#define os_advise_huge ao_gpl_os_advise_huge
#define os_move_onto ao_gpl_os_move_onto
#define os_map_table ao_gpl_os_map_table
#define os_unmap_table ao_gpl_os_unmap_table
#define os_release ao_gpl_os_release
#define os_mark_segment ao_gpl_os_mark_segment
#define os_getpid ao_gpl_os_getpid
#define os_gettid ao_gpl_os_gettid
#define os_thread_gone ao_gpl_os_thread_gone
#define os_without_signals ao_gpl_os_without_signals
#define os_pause ao_gpl_os_pause
#define os_stats ao_gpl_os_stats
#define os_now_ms ao_gpl_os_now_ms

/* chunk_provider.c */
#define chunk_alloc_pages ao_gpl_chunk_alloc_pages
#define chunk_free_pages ao_gpl_chunk_free_pages
#define chunk_set_owner ao_gpl_chunk_set_owner
#define chunk_trim ao_gpl_chunk_trim
#define chunk_visit_runs ao_gpl_chunk_visit_runs
#define chunk_stats ao_gpl_chunk_stats
#define chunk_decay ao_gpl_chunk_decay

/* span.c */
#define span_new_small ao_gpl_span_new_small
#define span_take_batch ao_gpl_span_take_batch
#define span_put_block ao_gpl_span_put_block
#define span_put_chain ao_gpl_span_put_chain
#define span_try_retire ao_gpl_span_try_retire
#define span_recycle ao_gpl_span_recycle
#define span_memory_can_grow ao_gpl_span_memory_can_grow
#define span_descriptor_get ao_gpl_span_descriptor_get
#define span_descriptor_put ao_gpl_span_descriptor_put
#define span_new_run ao_gpl_span_new_run
#define span_free_run ao_gpl_span_free_run
#define span_stats ao_gpl_span_stats

/* central.c */
#define central_alloc ao_gpl_central_alloc
#define central_alloc_batch ao_gpl_central_alloc_batch
#define central_free ao_gpl_central_free
#define central_free_chain ao_gpl_central_free_chain
#define central_reclaim ao_gpl_central_reclaim

/* atomic_ops_malloc.c */
#define malloc_large ao_gpl_malloc_large

/* large.c */
#define large_alloc ao_gpl_large_alloc
#define large_free_run ao_gpl_large_free_run
#define large_free_mapping ao_gpl_large_free_mapping
#define large_trim ao_gpl_large_trim
#define large_resize ao_gpl_large_resize
#define large_stats ao_gpl_large_stats
#define large_lookup ao_gpl_large_lookup
#define large_decay ao_gpl_large_decay

/* decay.c */
#define decay_tick ao_gpl_decay_tick
#define decay_tick_at ao_gpl_decay_tick_at
#define decay_tick_cache ao_gpl_decay_tick_cache

/* cache_bin.c */
#define bin_base ao_gpl_bin_base
#define bin_start ao_gpl_bin_start
#define bin_refill ao_gpl_bin_refill
#define bin_flush_to ao_gpl_bin_flush_to
#define bin_grow ao_gpl_bin_grow
#define cache_decay_self ao_gpl_cache_decay_self

/* thread_cache.c */
#define cache_alloc_slow ao_gpl_cache_alloc_slow
#define cache_free_slow ao_gpl_cache_free_slow
#define cache_alloc_run ao_gpl_cache_alloc_run
#define cache_free_run ao_gpl_cache_free_run
#define cache_flush_bin ao_gpl_cache_flush_bin
#define cache_flush_self ao_gpl_cache_flush_self
#define cache_reclaim_dead ao_gpl_cache_reclaim_dead
#define cache_stats ao_gpl_cache_stats

/* malloc_stats.c */
#define stats_foreign_free ao_gpl_stats_foreign_free

/* malloc_replace.c and malloc_family.c (libaomalloc only) */
#define replace_is_foreign ao_gpl_replace_is_foreign
#define replace_realloc ao_gpl_replace_realloc

/* checks.c (checks_* exist only in --enable-checks builds) */
#define misuse_report ao_gpl_misuse_report
#define checks_allocated ao_gpl_checks_allocated
#define checks_free ao_gpl_checks_free

/* stack_almost_lock_free.c */
#define ao_stack_alf_push ao_gpl_stack_alf_push
#define ao_stack_alf_pop ao_gpl_stack_alf_pop

#endif /* !AO_GPL_SYMBOLS_H */
