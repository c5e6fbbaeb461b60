// Device buffers over a host transport (docs/architecture.md "Communication"): a Transport that
// wraps another whose buffers must be host memory (MPI) and lets Comm hand it device memory of
// a device the host cannot read. Each call synchronises the device (collectives run after the
// ops that produce their buffers), copies every device buffer it sends to a host staging
// buffer, runs the inner call on the staging buffers, and copies what it received back to the
// device. Buffers the device does not own (a host scalar such as the loss) pass through as they
// are. A non-blocking receive lands in its own staging buffer and is copied to the device when
// wait() or test() completes it. Staging buffers grow on first use and are kept, so a step
// after the first allocates nothing.
#pragma once

#include <memory>
#include <vector>

#include "backend/device.h"
#include "parallel/transport.h"

namespace seqvit::parallel {

class StagingTransport : public Transport {
 public:
  StagingTransport(std::unique_ptr<Transport> inner, backend::Device& device);

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  int world_rank() const override { return inner_->world_rank(); }
  int64_t max_count() const override { return inner_->max_count(); }
  std::unique_ptr<Transport> split(int color, int key) const override;

  void all_to_all(const void* send, void* recv, int64_t block, DType t) override;
  void all_to_all_v(const void* send, std::span<const int64_t> send_counts,
                    std::span<const int64_t> send_displs, void* recv,
                    std::span<const int64_t> recv_counts, std::span<const int64_t> recv_displs,
                    DType t) override;
  void all_gather(const void* send, void* recv, int64_t block, DType t) override;
  void all_gather_v(const void* send, void* recv, std::span<const int64_t> counts,
                    DType t) override;
  void reduce_scatter_sum(const void* send, void* recv, int64_t block, DType t) override;
  void reduce_scatter_v_sum(const void* send, void* recv, std::span<const int64_t> counts,
                            DType t) override;
  void all_reduce_sum(void* buf, int64_t n, DType t) override;
  void broadcast(void* buf, int64_t n, int root, DType t) override;
  void reduce_sum(const void* send, void* recv, int64_t n, int root, DType t) override;
  void barrier() override { inner_->barrier(); }
  int64_t sendrecv(const void* send, int64_t ns, int dest, void* recv, int64_t nr, int source,
                   int tag, DType t) override;
  int isend(const void* buf, int64_t n, int dest, int tag, DType t) override;
  int irecv(void* buf, int64_t n, int source, int tag, DType t) override;
  int64_t wait(int transfer) override;
  std::optional<int64_t> test(int transfer) override;

 private:
  // The host view of [p, p + bytes): p itself when it is not device memory, else a staging
  // buffer (slot k of the call) filled from the device when `fill`.
  const void* in(const void* p, size_t bytes, int k);
  void* out(void* p, size_t bytes, int k, bool fill = false);
  void flush();  // copies the staged outputs of the call back to the device
  struct Staged {
    void* device = nullptr;
    size_t bytes = 0;
    int slot = 0;
  };
  struct Pending {  // a non-blocking transfer's staging
    int buffer = -1;         // index into pool_, -1: not staged
    void* device = nullptr;  // irecv into device memory: copied here on completion
    size_t elem = 0;
  };
  int take_buffer(size_t bytes);  // a free pool buffer of at least `bytes`
  int64_t complete(int transfer, int64_t got);

  std::unique_ptr<Transport> inner_;
  backend::Device& dev_;
  std::vector<std::byte> slots_[2];
  std::vector<Staged> outputs_;
  std::vector<Pending> pending_;  // by handle (the inner transport reuses handles)
  std::vector<std::vector<std::byte>> pool_;  // staging of transfers in flight, kept
  std::vector<int> free_;                     // indices of pool_ not in flight
};

}  // namespace seqvit::parallel
