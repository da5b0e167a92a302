/*
 * host_rows.cu - the crew of host threads and the two slots through which
 * rows in host memory reach the GPU (host_rows.cuh).
 */
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>
#include <vector>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "common.h"
#include "host_rows.cuh"
#include "status.cuh"

/* ---- the crew ------------------------------------------------------------- */

/* A job's shares: fn(ctx, share, shares) for share 0 .. shares - 1. */
struct CrewJob {
    void (*fn)(const void *ctx, int share, int shares);
    const void *ctx;
};

/* Helper threads that each run a share of one job at a time; the thread that
 * hands out the job runs share 0 and returns when every share is done. One
 * memcpy thread moves far less than the memory system can, so a chunk is
 * copied by several. */
struct HostCrew {
    std::mutex mu;
    std::condition_variable wake, idle;
    std::vector<std::thread> helpers;
    CrewJob job = {NULL, NULL};
    int shares = 1;
    int running = 0;
    uint64_t round = 0;
    bool quit = false;
};

static void helper_loop(HostCrew *c, int share) {
    uint64_t seen = 0;
    for (;;) {
        int shares;
        {
            std::unique_lock<std::mutex> lock(c->mu);
            c->wake.wait(lock, [&] { return c->quit || c->round != seen; });
            if (c->quit) return;
            seen = c->round;
            shares = c->shares;
        }
        c->job.fn(c->job.ctx, share, shares);
        std::lock_guard<std::mutex> lock(c->mu);
        if (--c->running == 0) c->idle.notify_one();
    }
}

static void crew_stop(HostCrew *c) {
    if (!c) return;
    {
        std::lock_guard<std::mutex> lock(c->mu);
        c->quit = true;
    }
    c->wake.notify_all();
    for (std::thread &t : c->helpers) t.join();
    delete c;
}

/* A crew of up to `want` workers (the caller counts as one); fewer where
 * threads cannot be started, NULL where not even the crew can be made (the
 * caller then does every job alone). */
static HostCrew *crew_start(int want) {
    HostCrew *c = new (std::nothrow) HostCrew;
    if (!c) return NULL;
    try {
        c->helpers.reserve((size_t)(want > 1 ? want - 1 : 0));
        for (int i = 1; i < want; i++) c->helpers.emplace_back(helper_loop, c, i);
    } catch (...) { /* the threads that started do the work */
    }
    c->shares = (int)c->helpers.size() + 1;
    return c;
}

static void crew_run_job(HostCrew *c, CrewJob job) {
    if (!c || c->helpers.empty()) {
        job.fn(job.ctx, 0, 1);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(c->mu);
        c->job = job;
        c->running = (int)c->helpers.size();
        c->round++;
    }
    c->wake.notify_all();
    job.fn(job.ctx, 0, c->shares);
    std::unique_lock<std::mutex> lock(c->mu);
    c->idle.wait(lock, [&] { return c->running == 0; });
}

/* Runs f(share, shares) on every worker of the crew (no allocation). */
template <class F>
static void crew_run(HostCrew *c, const F &f) {
    crew_run_job(c, CrewJob{[](const void *ctx, int share, int shares) {
                                (*(const F *)ctx)(share, shares);
                            },
                            &f});
}

/* Share `share` of `shares` of n items: [*begin, *end). */
static void share_of(int64_t n, int share, int shares, int64_t *begin, int64_t *end) {
    *begin = n * share / shares;
    *end = n * (share + 1) / shares;
}

/* ---- the slots ------------------------------------------------------------ */

static void free_slot(RowSlot *s) {
    cudaFreeHost(s->host_x);
    cudaFreeHost(s->host_labels);
    cudaFreeHost(s->host_values);
    cudaFreeHost(s->host_weights);
    cudaFreeHost(s->host_out);
    cudaFree(s->dev_x);
    cudaFree(s->dev_labels);
    cudaFree(s->dev_values);
    cudaFree(s->dev_weights);
    s->host_x = s->dev_x = NULL;
    s->host_labels = s->dev_labels = NULL;
    s->host_values = s->dev_values = s->host_weights = s->dev_weights = s->host_out = NULL;
}

static void free_buffers(RowStream *rs) {
    if (rs->copy) cudaStreamSynchronize(rs->copy);
    for (RowSlot &s : rs->slot) {
        if (s.out_ready) cudaEventSynchronize(s.out_ready);
        free_slot(&s);
    }
    rs->rows_cap = 0;
    rs->cap = RowParts{0, false, 0, false, 0};
}

void row_stream_free(RowStream *rs) {
    free_buffers(rs);
    for (RowSlot &s : rs->slot) {
        if (s.copied) cudaEventDestroy(s.copied);
        if (s.consumed) cudaEventDestroy(s.consumed);
        if (s.out_ready) cudaEventDestroy(s.out_ready);
        s.copied = s.consumed = s.out_ready = NULL;
    }
    if (rs->copy) cudaStreamDestroy(rs->copy);
    rs->copy = NULL;
    crew_stop(rs->crew);
    rs->crew = NULL;
}

void row_stream_set_threads(RowStream *rs, int threads) {
    if (threads == rs->threads) return;
    rs->threads = threads;
    crew_stop(rs->crew); /* the next chunk starts one of the new size */
    rs->crew = NULL;
}

static mlp_status pinned(void **p, int64_t bytes) {
    *p = NULL;
    if (bytes <= 0) return MLP_OK;
    const cudaError_t e = cudaHostAlloc(p, (size_t)bytes, cudaHostAllocDefault);
    if (e == cudaSuccess) return MLP_OK;
    *p = NULL;
    cudaGetLastError();
    return mlp_fail(MLP_ERR_NOMEM, "out of pinned host memory for streaming rows (%lld bytes): %s",
                    (long long)bytes, cudaGetErrorString(e));
}

static mlp_status on_device(void **p, int64_t bytes) {
    *p = NULL;
    return bytes > 0 ? device_alloc((uint8_t **)p, bytes, "streaming rows") : MLP_OK;
}

static mlp_status start(RowStream *rs) {
    cudaError_t e = cudaSuccess;
    if (!rs->copy) e = cudaStreamCreateWithFlags(&rs->copy, cudaStreamNonBlocking);
    for (RowSlot &s : rs->slot) {
        if (e == cudaSuccess && !s.copied)
            e = cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming);
        if (e == cudaSuccess && !s.consumed)
            e = cudaEventCreateWithFlags(&s.consumed, cudaEventDisableTiming);
        if (e == cudaSuccess && !s.out_ready)
            e = cudaEventCreateWithFlags(&s.out_ready, cudaEventDisableTiming);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return mlp_fail(MLP_ERR_DEVICE, "CUDA error starting the row stream: %s",
                        cudaGetErrorString(e));
    }
    if (!rs->crew) {
        int want = rs->threads;
        if (want <= 0) {
            const unsigned hw = std::thread::hardware_concurrency();
            want = hw == 0 ? 1 : hw > 8 ? 8 : (int)hw;
        }
        rs->crew = crew_start(want);
    }
    return MLP_OK;
}

static int64_t most(int64_t a, int64_t b) { return a > b ? a : b; }

mlp_status row_stream_reserve(RowStream *rs, int64_t rows, RowParts parts) {
    mlp_status st = start(rs);
    if (st != MLP_OK) return st;
    const RowParts &c = rs->cap;
    if (rows <= rs->rows_cap && parts.x_bytes <= c.x_bytes && (!parts.labels || c.labels) &&
        parts.values <= c.values && (!parts.weights || c.weights) && parts.out <= c.out)
        return MLP_OK;
    const RowParts want = {most(parts.x_bytes, c.x_bytes), parts.labels || c.labels,
                           most(parts.values, c.values), parts.weights || c.weights,
                           most(parts.out, c.out)};
    rows = most(rows, rs->rows_cap);
    free_buffers(rs);
    for (RowSlot &s : rs->slot) {
        const int64_t x = rows * want.x_bytes, lab = want.labels ? rows * 4 : 0,
                      val = rows * want.values * 4, w = want.weights ? rows * 4 : 0,
                      out = rows * want.out * 4;
        if ((st = pinned((void **)&s.host_x, x)) != MLP_OK ||
            (st = on_device((void **)&s.dev_x, x)) != MLP_OK ||
            (st = pinned((void **)&s.host_labels, lab)) != MLP_OK ||
            (st = on_device((void **)&s.dev_labels, lab)) != MLP_OK ||
            (st = pinned((void **)&s.host_values, val)) != MLP_OK ||
            (st = on_device((void **)&s.dev_values, val)) != MLP_OK ||
            (st = pinned((void **)&s.host_weights, w)) != MLP_OK ||
            (st = on_device((void **)&s.dev_weights, w)) != MLP_OK ||
            (st = pinned((void **)&s.host_out, out)) != MLP_OK) {
            free_buffers(rs);
            return st;
        }
    }
    rs->rows_cap = rows;
    rs->cap = want;
    return MLP_OK;
}

/* memcpy into pinned memory that the CPU will not read again: on x86-64
 * with streaming stores, which skip reading each destination line into the
 * cache first (the copy is bound by the host's memory bandwidth, which the
 * DMA engine shares). The caller fences (stream_fence) before the GPU
 * reads. */
static void copy_to_pinned(uint8_t *dst, const uint8_t *src, int64_t bytes) {
#if defined(__x86_64__)
    int64_t head = (int64_t)((16 - ((uintptr_t)dst & 15)) & 15);
    if (head > bytes) head = bytes;
    memcpy(dst, src, (size_t)head);
    dst += head;
    src += head;
    bytes -= head;
    int64_t i = 0;
    for (; i + 64 <= bytes; i += 64) {
        const __m128i a = _mm_loadu_si128((const __m128i *)(src + i)),
                      b = _mm_loadu_si128((const __m128i *)(src + i + 16)),
                      c = _mm_loadu_si128((const __m128i *)(src + i + 32)),
                      d = _mm_loadu_si128((const __m128i *)(src + i + 48));
        _mm_stream_si128((__m128i *)(dst + i), a);
        _mm_stream_si128((__m128i *)(dst + i + 16), b);
        _mm_stream_si128((__m128i *)(dst + i + 32), c);
        _mm_stream_si128((__m128i *)(dst + i + 48), d);
    }
    memcpy(dst + i, src + i, (size_t)(bytes - i));
#else
    memcpy(dst, src, (size_t)bytes);
#endif
}

static void stream_fence(void) {
#if defined(__x86_64__)
    _mm_sfence();
#endif
}

/* Copies item i of `count` items of `size` bytes from src, at source item
 * order[start + i] (start + i without an order), to dst's item i. Gathered
 * rows are copied plainly: their ends fall inside cache lines, which
 * streaming stores would write out piecemeal (measured slower,
 * benchmarks/RESULTS.md). */
static void gather(uint8_t *dst, const uint8_t *src, int64_t size, const int64_t *order,
                   int64_t start, int64_t begin, int64_t end) {
    if (!order) {
        copy_to_pinned(dst + begin * size, src + (start + begin) * size, (end - begin) * size);
        return;
    }
    for (int64_t i = begin; i < end; i++)
        memcpy(dst + i * size, src + order[start + i] * size, (size_t)size);
}

cudaError_t row_stream_stage(RowStream *rs, int k, const HostRows &rows, const int64_t *order,
                             int64_t start, int64_t count) {
    RowSlot &s = rs->slot[k];
    cudaError_t e = cudaEventSynchronize(s.copied); /* the host buffers are free again */
    if (e != cudaSuccess) return e;
    const bool labels = rows.labels && s.host_labels, values = rows.values && s.host_values,
               weights = rows.weights && s.host_weights;
    crew_run(rs->crew, [&](int share, int shares) {
        int64_t begin, end;
        share_of(count, share, shares, &begin, &end);
        gather(s.host_x, rows.X, rows.x_bytes, order, start, begin, end);
        if (labels)
            gather((uint8_t *)s.host_labels, (const uint8_t *)rows.labels, 4, order, start, begin,
                   end);
        if (values)
            gather((uint8_t *)s.host_values, (const uint8_t *)rows.values, 4 * rows.n_values,
                   order, start, begin, end);
        if (weights)
            gather((uint8_t *)s.host_weights, (const uint8_t *)rows.weights, 4, order, start,
                   begin, end);
        stream_fence();
    });
    e = cudaStreamWaitEvent(rs->copy, s.consumed, 0); /* the GPU is done with the last chunk */
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(s.dev_x, s.host_x, (size_t)(count * rows.x_bytes),
                            cudaMemcpyHostToDevice, rs->copy);
    if (e == cudaSuccess && labels)
        e = cudaMemcpyAsync(s.dev_labels, s.host_labels, sizeof(int32_t) * (size_t)count,
                            cudaMemcpyHostToDevice, rs->copy);
    if (e == cudaSuccess && values)
        e = cudaMemcpyAsync(s.dev_values, s.host_values,
                            sizeof(float) * (size_t)(count * rows.n_values),
                            cudaMemcpyHostToDevice, rs->copy);
    if (e == cudaSuccess && weights)
        e = cudaMemcpyAsync(s.dev_weights, s.host_weights, sizeof(float) * (size_t)count,
                            cudaMemcpyHostToDevice, rs->copy);
    if (e == cudaSuccess) e = cudaEventRecord(s.copied, rs->copy);
    return e;
}

void row_stream_copy_out(RowStream *rs, void *dst, const void *src, int64_t bytes) {
    crew_run(rs->crew, [&](int share, int shares) {
        int64_t begin, end;
        share_of(bytes, share, shares, &begin, &end);
        memcpy((uint8_t *)dst + begin, (const uint8_t *)src + begin, (size_t)(end - begin));
    });
}

/* ---- how much of the GPU a data set may take ------------------------------ */

mlp_status data_limit_bytes(int64_t *limit) {
    const char *text = getenv("MLP_CUDA_DATA_LIMIT");
    if (text && *text) {
        char *end = NULL;
        const double number = strtod(text, &end);
        double scale = 1.0;
        if (end && *end) {
            const char unit = (char)toupper((unsigned char)*end);
            scale = unit == 'K' ? 1024.0 : unit == 'M' ? 1048576.0 : unit == 'G' ? 1073741824.0
                                                                                  : 0.0;
            end++;
            if (scale > 0.0 && (*end == 'B' || *end == 'b')) end++;
        }
        if (end == text || *end || scale == 0.0 || !(number >= 0.0) || number * scale > 9e18)
            return mlp_fail(MLP_ERR_INVALID,
                            "MLP_CUDA_DATA_LIMIT must be a number of bytes such as 4096, 512M "
                            "or 2G, got '%s'", text);
        *limit = (int64_t)(number * scale);
        return MLP_OK;
    }
    size_t free_bytes = 0, total = 0;
    const cudaError_t e = cudaMemGetInfo(&free_bytes, &total);
    if (e != cudaSuccess) return cuda_fail(e, "cudaMemGetInfo");
    *limit = (int64_t)(free_bytes / 4 * 3);
    return MLP_OK;
}
