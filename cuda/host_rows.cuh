/*
 * host_rows.cuh - rows that stay in host memory reach the GPU in chunks.
 *
 * Prediction reads each row once, and a data set larger than the GPU's share
 * for it (MLP_CUDA_DATA_LIMIT) cannot be copied there whole; both keep their
 * rows in the caller's memory. A crew of host threads copies (or, for a
 * training chunk, gathers in the epoch's order) one chunk of rows into
 * pinned memory, one DMA copy on its own stream takes it to the GPU, and the
 * model's stream computes on it while the crew fills the other slot with the
 * next chunk: two slots, ordered by events, so no copy waits for the compute
 * and no compute for a copy it does not need.
 */
#ifndef MLP_CUDA_HOST_ROWS_CUH
#define MLP_CUDA_HOST_ROWS_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "mlp.h"

struct HostCrew;

/* One chunk's place on its way: pinned host buffers, their device copies,
 * and the events that say when each may be written again. */
struct RowSlot {
    uint8_t *host_x, *dev_x;           /* rows_cap * x_bytes */
    int32_t *host_labels, *dev_labels; /* rows_cap, when the chunk has labels */
    float *host_values, *dev_values;   /* rows_cap * values_cap, for value targets */
    float *host_weights, *dev_weights; /* rows_cap, for sample weights */
    float *host_out;                   /* rows_cap * out_cap: outputs on their way back */
    cudaEvent_t copied;    /* the slot's copy to the GPU landed */
    cudaEvent_t consumed;  /* the compute that read the slot's device rows finished */
    cudaEvent_t out_ready; /* the outputs reached host_out */
};

/* What a chunk carries besides its rows. */
struct RowParts {
    int64_t x_bytes;   /* bytes per row */
    bool labels;       /* int32 per row */
    int64_t values;    /* floats per row of value targets (0: none) */
    bool weights;      /* a float per row */
    int64_t out;       /* floats per row coming back (0: none) */
};

struct RowStream {
    RowSlot slot[2];
    int64_t rows_cap;
    RowParts cap; /* what the slots have room for, per row */
    cudaStream_t copy;
    HostCrew *crew;
    int threads; /* the crew's most workers (0: the machine's hardware threads, up to 8) */
};

/* Makes both slots hold `rows` rows of `parts` (growing only; contents are
 * not kept) and starts the copy stream and the crew on first use. */
mlp_status row_stream_reserve(RowStream *rs, int64_t rows, RowParts parts);
void row_stream_free(RowStream *rs);

/* The crew's most workers from now on (0: the machine's, up to 8). */
void row_stream_set_threads(RowStream *rs, int threads);

/* The rows of a chunk, from the caller's memory. */
struct HostRows {
    const uint8_t *X;        /* (n, x_bytes) */
    const int32_t *labels;   /* or NULL */
    const float *values;     /* (n, n_values) or NULL */
    const float *weights;    /* or NULL */
    int64_t x_bytes, n_values;
};

/* Fills slot k with rows order[start .. start + count) of `rows` (rows
 * start .. start + count without an order) and enqueues their copy to the
 * GPU on the copy stream, after the slot's last compute (consumed); waits
 * first for the slot's last copy from host memory. Records `copied`. Safe
 * from a helper thread while the model's stream works on the other slot;
 * returns a CUDA error rather than setting the thread's message. */
cudaError_t row_stream_stage(RowStream *rs, int k, const HostRows &rows, const int64_t *order,
                             int64_t start, int64_t count);

/* Copies `bytes` bytes with the crew's workers (the caller among them). */
void row_stream_copy_out(RowStream *rs, void *dst, const void *src, int64_t bytes);

/* MLP_CUDA_DATA_LIMIT: the most bytes of a data set's rows that the CUDA
 * core copies to the GPU (bytes, or with a K, M or G suffix); a larger set
 * stays in host memory and streams. Unset: 3/4 of the GPU's free memory. */
mlp_status data_limit_bytes(int64_t *limit);

#endif /* MLP_CUDA_HOST_ROWS_CUH */
