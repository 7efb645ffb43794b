/* SPDX-License-Identifier: MIT */
/* Large objects: page runs up to MAX_RUN_PAGES, direct mappings beyond. */
#include "internal.h"

/* Direct mappings are sized in units of the largest common OS page, so the
 * trimming in os_map_aligned() always works on page boundaries. */
#define MAP_UNIT ((size_t)64 << 10)

static void *map_large(size_t size)
{
  size_t map_size;
  struct large_header *h;

  if (size > SIZE_MAX - LARGE_HEADER_SIZE - MAP_UNIT - SEGMENT_SIZE)
    return NULL;
  map_size = (size + LARGE_HEADER_SIZE + MAP_UNIT - 1) & ~(MAP_UNIT - 1);
  /* Segment alignment: AO_free finds the header by masking the pointer. */
  h = os_map_aligned(map_size, SEGMENT_SIZE);
  if (h == NULL)
    return NULL;
  h->kind = REGION_LARGE;
  h->map_size = map_size;
  return (char *)h + LARGE_HEADER_SIZE;
}

void *large_alloc(size_t size, int grow)
{
  void *mem;

  if (size <= (size_t)MAX_RUN_PAGES * PAGE_SIZE
      && span_new_run(size, grow, &mem) != NULL)
    return mem;
  return grow ? map_large(size) : NULL;
}

void large_free_run(struct span *d)
{
  span_free_run(d);
}

/* Only the owner of a large mapping ever reaches it, and it is on no list:
 * unmapping cannot pull memory from under a concurrent reader. */
void large_free_mapping(struct large_header *h)
{
  os_unmap(h, h->map_size);
}
