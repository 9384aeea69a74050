// CUDA-graph capture and replay for the harness (issue 24, goal 4): a C ABI over libtorch's
// at::cuda::CUDAGraph, which tch 0.24 does not bind. Built by harness/build.rs into a small
// shared library that `harness/src/cuda_graph.rs` loads only after libtorch's CUDA library is
// loaded (its symbols resolve against that library; nothing here is linked into the binary).
//
// The recipe is PyTorch's own (torch.cuda.graphs.graph): capture on a side stream that first
// waits for the current one, into the graph's private memory pool, with autocast's weight-cast
// cache off (a cached cast made during capture would point into the graph's pool); afterwards
// the current stream waits for the capture stream. Replays run on the current stream. The
// default CUDA generator is registered by capture_begin, so random draws inside the graph
// advance at every replay.
//
// Every entry point returns 0 on success; on failure it writes libtorch's message, NUL-ended
// and truncated to `cap` bytes, into `err` and returns 1. No C++ exception crosses the ABI.
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/core/Event.h>

#include <cstring>
#include <exception>
#include <optional>

namespace {

struct Graph {
  at::cuda::CUDAGraph graph;
  c10::DeviceIndex device = 0;
  c10::cuda::CUDAStream stream;                // the side stream: warm-up and capture run here
  std::optional<c10::cuda::CUDAStream> prior;  // the current stream before entering it
  bool cache_was_enabled = true;
  bool capturing = false;

  Graph(c10::DeviceIndex d) : device(d), stream(c10::cuda::getStreamFromPool(false, d)) {}
};

void write_error(char* err, size_t cap, const char* msg) {
  if (err == nullptr || cap == 0) return;
  std::strncpy(err, msg, cap - 1);
  err[cap - 1] = '\0';
}

template <typename F>
int guarded(char* err, size_t cap, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    write_error(err, cap, e.what_without_backtrace());
  } catch (const std::exception& e) {
    write_error(err, cap, e.what());
  } catch (...) {
    write_error(err, cap, "unknown C++ exception");
  }
  return 1;
}

// `waiter` waits for the work queued on `waited` so far.
void wait_for(const c10::cuda::CUDAStream& waiter, const c10::cuda::CUDAStream& waited) {
  c10::Event event(c10::DeviceType::CUDA);
  event.record(waited.unwrap());
  event.block(waiter.unwrap());
}

// Makes the graph's side stream current, after the work already queued on the current one.
void enter(Graph* g) {
  TORCH_CHECK(!g->prior.has_value(), "the graph's stream is already current");
  g->prior = c10::cuda::getCurrentCUDAStream(g->device);
  wait_for(g->stream, *g->prior);
  c10::cuda::setCurrentCUDAStream(g->stream);
}

// Makes the stream current before `enter` current again; it waits for the side stream's work.
void leave(Graph* g) {
  if (!g->prior.has_value()) return;
  c10::cuda::setCurrentCUDAStream(*g->prior);
  wait_for(*g->prior, g->stream);
  g->prior.reset();
}

}  // namespace

extern "C" {

// A new, empty graph for CUDA device `device` in *out.
int infoat_cuda_graph_new(int device, void** out, char* err, size_t cap) {
  return guarded(err, cap, [&] {
    auto count = static_cast<int>(c10::cuda::device_count());
    TORCH_CHECK(device >= 0 && device < count, "CUDA device ", device, " does not exist (", count,
                " CUDA devices)");
    *out = new Graph(static_cast<c10::DeviceIndex>(device));
  });
}

// Makes the graph's side stream current (for the warm-up runs PyTorch's recipe asks for before
// a capture: lazy initialisations then happen on the stream the capture uses).
int infoat_cuda_graph_enter_stream(void* handle, char* err, size_t cap) {
  return guarded(err, cap, [&] { enter(static_cast<Graph*>(handle)); });
}

// Undoes infoat_cuda_graph_enter_stream.
int infoat_cuda_graph_leave_stream(void* handle, char* err, size_t cap) {
  return guarded(err, cap, [&] { leave(static_cast<Graph*>(handle)); });
}

// Starts capturing on the side stream: every CUDA kernel queued until
// infoat_cuda_graph_capture_end (autograd's backward passes included) is recorded, not run.
int infoat_cuda_graph_capture_begin(void* handle, char* err, size_t cap) {
  auto* g = static_cast<Graph*>(handle);
  return guarded(err, cap, [&] {
    TORCH_CHECK(!g->capturing, "a capture is already under way on this graph");
    c10::cuda::device_synchronize();
    c10::cuda::CUDACachingAllocator::emptyCache();
    enter(g);
    g->cache_was_enabled = at::autocast::is_autocast_cache_enabled();
    at::autocast::clear_cache();
    at::autocast::set_autocast_cache_enabled(false);
    try {
      g->graph.capture_begin();
    } catch (...) {
      at::autocast::set_autocast_cache_enabled(g->cache_was_enabled);
      leave(g);
      throw;
    }
    g->capturing = true;
  });
}

// Ends the capture and instantiates the graph; the stream current before the capture is
// current again and waits for the side stream.
int infoat_cuda_graph_capture_end(void* handle, char* err, size_t cap) {
  auto* g = static_cast<Graph*>(handle);
  return guarded(err, cap, [&] {
    TORCH_CHECK(g->capturing, "no capture is under way on this graph");
    g->capturing = false;
    struct Restore {
      Graph* g;
      ~Restore() {
        at::autocast::set_autocast_cache_enabled(g->cache_was_enabled);
        try {
          leave(g);
        } catch (...) {
        }
      }
    } restore{g};
    g->graph.capture_end();
  });
}

// Launches the captured work once on the current stream.
int infoat_cuda_graph_replay(void* handle, char* err, size_t cap) {
  auto* g = static_cast<Graph*>(handle);
  return guarded(err, cap, [&] {
    TORCH_CHECK(!g->capturing, "the graph is still being captured");
    g->graph.replay();
  });
}

// Frees the graph (its memory pool goes back to the caching allocator).
void infoat_cuda_graph_free(void* handle) {
  try {
    delete static_cast<Graph*>(handle);
  } catch (...) {
  }
}

}  // extern "C"
