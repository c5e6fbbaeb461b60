#include "parallel/staging_transport.h"

#include <algorithm>

namespace seqvit::parallel {
namespace {

size_t elem_bytes(DType t) {
  switch (t) {
    case DType::F32:
    case DType::I32: return 4;
    case DType::F64:
    case DType::I64: return 8;
    case DType::Byte: return 1;
  }
  return 1;
}

// Elements spanned by blocks counts[j] at displs[j] (packed in rank order when displs is empty).
int64_t extent(std::span<const int64_t> counts, std::span<const int64_t> displs) {
  int64_t e = 0, at = 0;
  for (size_t j = 0; j < counts.size(); ++j) {
    const int64_t d = displs.empty() ? at : displs[j];
    e = std::max(e, d + counts[j]);
    at += counts[j];
  }
  return e;
}

int64_t sum(std::span<const int64_t> counts) {
  int64_t s = 0;
  for (int64_t c : counts) s += c;
  return s;
}

}  // namespace

StagingTransport::StagingTransport(std::unique_ptr<Transport> inner, backend::Device& device)
    : inner_(std::move(inner)), dev_(device) {}

std::unique_ptr<Transport> StagingTransport::split(int color, int key) const {
  auto t = inner_->split(color, key);
  if (!t) return t;
  return std::make_unique<StagingTransport>(std::move(t), dev_);
}

const void* StagingTransport::in(const void* p, size_t bytes, int k) {
  if (!p || bytes == 0 || !dev_.owns(p, bytes)) return p;
  auto& s = slots_[k];
  if (s.size() < bytes) s.resize(bytes);
  dev_.copy_to_host(s.data(), p, bytes);  // synchronises: the producing ops have run
  return s.data();
}

void* StagingTransport::out(void* p, size_t bytes, int k, bool fill) {
  if (!p || bytes == 0 || !dev_.owns(p, bytes)) return p;
  auto& s = slots_[k];
  if (s.size() < bytes) s.resize(bytes);
  if (fill) dev_.copy_to_host(s.data(), p, bytes);
  outputs_.push_back({p, bytes, k});
  return s.data();
}

void StagingTransport::flush() {
  for (const auto& o : outputs_) dev_.copy_to_device(o.device, slots_[o.slot].data(), o.bytes);
  outputs_.clear();
  dev_.synchronize();  // the staging buffers are reused by the next call
}

void StagingTransport::all_to_all(const void* send, void* recv, int64_t block, DType t) {
  const size_t b = static_cast<size_t>(block * size()) * elem_bytes(t);
  dev_.synchronize();
  inner_->all_to_all(in(send, b, 0), out(recv, b, 1), block, t);
  flush();
}

void StagingTransport::all_to_all_v(const void* send, std::span<const int64_t> send_counts,
                                    std::span<const int64_t> send_displs, void* recv,
                                    std::span<const int64_t> recv_counts,
                                    std::span<const int64_t> recv_displs, DType t) {
  const size_t e = elem_bytes(t);
  dev_.synchronize();
  // the receive side is filled first: displacements may leave gaps it must not overwrite
  inner_->all_to_all_v(in(send, extent(send_counts, send_displs) * e, 0), send_counts,
                       send_displs,
                       out(recv, extent(recv_counts, recv_displs) * e, 1, !recv_displs.empty()),
                       recv_counts, recv_displs, t);
  flush();
}

void StagingTransport::all_gather(const void* send, void* recv, int64_t block, DType t) {
  const size_t e = elem_bytes(t);
  dev_.synchronize();
  inner_->all_gather(in(send, block * e, 0), out(recv, block * size() * e, 1), block, t);
  flush();
}

void StagingTransport::all_gather_v(const void* send, void* recv,
                                    std::span<const int64_t> counts, DType t) {
  const size_t e = elem_bytes(t);
  dev_.synchronize();
  inner_->all_gather_v(in(send, counts[rank()] * e, 0), out(recv, sum(counts) * e, 1), counts, t);
  flush();
}

void StagingTransport::reduce_scatter_sum(const void* send, void* recv, int64_t block, DType t) {
  const size_t e = elem_bytes(t);
  dev_.synchronize();
  inner_->reduce_scatter_sum(in(send, block * size() * e, 0), out(recv, block * e, 1), block, t);
  flush();
}

void StagingTransport::reduce_scatter_v_sum(const void* send, void* recv,
                                            std::span<const int64_t> counts, DType t) {
  const size_t e = elem_bytes(t);
  dev_.synchronize();
  inner_->reduce_scatter_v_sum(in(send, sum(counts) * e, 0), out(recv, counts[rank()] * e, 1),
                               counts, t);
  flush();
}

void StagingTransport::all_reduce_sum(void* buf, int64_t n, DType t) {
  dev_.synchronize();
  inner_->all_reduce_sum(out(buf, n * elem_bytes(t), 0, true), n, t);
  flush();
}

void StagingTransport::broadcast(void* buf, int64_t n, int root, DType t) {
  dev_.synchronize();
  inner_->broadcast(out(buf, n * elem_bytes(t), 0, rank() == root), n, root, t);
  flush();
}

void StagingTransport::reduce_sum(const void* send, void* recv, int64_t n, int root, DType t) {
  const size_t b = n * elem_bytes(t);
  dev_.synchronize();
  inner_->reduce_sum(in(send, b, 0), out(recv, b, 1), n, root, t);
  flush();
}

int64_t StagingTransport::sendrecv(const void* send, int64_t ns, int dest, void* recv, int64_t nr,
                                   int source, int tag, DType t) {
  const size_t e = elem_bytes(t);
  dev_.synchronize();
  const int64_t got = inner_->sendrecv(in(send, ns * e, 0), ns, dest, out(recv, nr * e, 1), nr,
                                       source, tag, t);
  flush();
  return got;
}

int StagingTransport::take_buffer(size_t bytes) {
  if (free_.empty()) {
    pool_.emplace_back();
    free_.reserve(pool_.size());
    free_.push_back(static_cast<int>(pool_.size()) - 1);
  }
  const int b = free_.back();
  free_.pop_back();
  auto& buf = pool_[static_cast<size_t>(b)];
  if (buf.size() < bytes) buf.resize(bytes);
  return b;
}

int StagingTransport::isend(const void* buf, int64_t n, int dest, int tag, DType t) {
  const size_t bytes = n * elem_bytes(t);
  if (!buf || bytes == 0 || !dev_.owns(buf, bytes)) return inner_->isend(buf, n, dest, tag, t);
  const int b = take_buffer(bytes);  // stays put until the transfer completes
  dev_.copy_to_host(pool_[static_cast<size_t>(b)].data(), buf, bytes);
  const int h = inner_->isend(pool_[static_cast<size_t>(b)].data(), n, dest, tag, t);
  if (static_cast<size_t>(h) >= pending_.size()) pending_.resize(static_cast<size_t>(h) + 1);
  pending_[static_cast<size_t>(h)] = {b, nullptr, 0};
  return h;
}

int StagingTransport::irecv(void* buf, int64_t n, int source, int tag, DType t) {
  const size_t bytes = n * elem_bytes(t);
  if (!buf || bytes == 0 || !dev_.owns(buf, bytes)) return inner_->irecv(buf, n, source, tag, t);
  const int b = take_buffer(bytes);
  const int h = inner_->irecv(pool_[static_cast<size_t>(b)].data(), n, source, tag, t);
  if (static_cast<size_t>(h) >= pending_.size()) pending_.resize(static_cast<size_t>(h) + 1);
  pending_[static_cast<size_t>(h)] = {b, buf, elem_bytes(t)};
  return h;
}

// A completed transfer: a staged receive goes to the device, and its buffer back to the pool.
int64_t StagingTransport::complete(int transfer, int64_t got) {
  if (static_cast<size_t>(transfer) >= pending_.size()) return got;
  Pending& p = pending_[static_cast<size_t>(transfer)];
  if (p.buffer < 0) return got;
  if (p.device) {
    dev_.copy_to_device(p.device, pool_[static_cast<size_t>(p.buffer)].data(),
                        static_cast<size_t>(got) * p.elem);
    dev_.synchronize();
  }
  free_.push_back(p.buffer);
  p = Pending{};
  return got;
}

int64_t StagingTransport::wait(int transfer) { return complete(transfer, inner_->wait(transfer)); }

std::optional<int64_t> StagingTransport::test(int transfer) {
  const auto got = inner_->test(transfer);
  if (got) complete(transfer, *got);
  return got;
}

}  // namespace seqvit::parallel
