// Fused CPU kernels for the L3RS step with base directions {sgd, adam, weight_decay}.
//
// A step is two passes over memory, as SPEC §1 asks:
//   probe  : reads g; returns per-tensor sum(g^2), exact (it decides whether a tensor is
//            finite), and, without writing any state, sum(d_adam^2) of the *prospective*
//            Adam direction, sum(g*m) and sum(m^2) with the momentum before this step (what
//            rate adaptation's cosine needs). On a tensor of at least kSampleMinPages pages
//            those three are summed over one 4 KiB page in kSampleEvery (the pages whose
//            index is `sample_offset` modulo kSampleEvery), with the sample's sum(g^2) and
//            element count, so that m and v are read once a step, not twice
//            (docs/adr/0012; optim/sampling.py holds the same rule for the other backends).
//   commit : reads p, g, m, v; writes m, v, p; returns per-tensor sum(p_new^2), which
//            is the next step's ||p|| feature (saving a read pass).
// Work is split into fixed chunks across all tensors, so partial sums are combined in
// the same order whatever the thread count: results are deterministic.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

constexpr int64_t kChunk = 1 << 14;
// float32 elements in a 4 KiB page, one page in kSampleEvery read, tensors of fewer pages
// summed exactly: keep equal to optim/sampling.py.
constexpr int64_t kPage = 1024;
constexpr int64_t kSampleEvery = 8;
constexpr int64_t kSampleMinPages = 64;
static_assert(kChunk % kPage == 0, "chunks hold whole pages");

struct Chunk {
  int64_t tensor;
  int64_t begin;
  int64_t end;
};

std::vector<Chunk> make_chunks(const std::vector<at::Tensor>& tensors) {
  std::vector<Chunk> chunks;
  for (int64_t i = 0; i < static_cast<int64_t>(tensors.size()); ++i) {
    const int64_t n = tensors[i].numel();
    for (int64_t b = 0; b < n; b += kChunk) {
      chunks.push_back({i, b, std::min(n, b + kChunk)});
    }
  }
  return chunks;
}

void check_list(const std::vector<at::Tensor>& ts, const char* what) {
  for (const auto& t : ts) {
    TORCH_CHECK(t.device().is_cpu(), "fused L3RS: ", what, " must be on the CPU");
    TORCH_CHECK(t.scalar_type() == at::kFloat, "fused L3RS: ", what, " must be float32");
    TORCH_CHECK(t.is_non_overlapping_and_dense(), "fused L3RS: ", what, " must be dense");
  }
}


// Inner loops on raw pointers, so the compiler vectorises them.
struct AdamConsts {
  float b1, b2, omb1, omb2, eps, inv_bc1, inv_sqrt_bc2;
};

AdamConsts adam_consts(double beta1, double beta2, double eps, double bc1, double bc2) {
  return {static_cast<float>(beta1), static_cast<float>(beta2),
          static_cast<float>(1.0 - beta1), static_cast<float>(1.0 - beta2),
          static_cast<float>(eps), static_cast<float>(1.0 / bc1),
          static_cast<float>(1.0 / std::sqrt(bc2))};
}

float sum_sq(const float* __restrict x, int64_t n) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) acc += x[j] * x[j];
  return acc;
}

struct AdamSums {
  float dd = 0.f, gm = 0.f, mm = 0.f, gg = 0.f;
  int64_t count = 0;
};

void add_adam_dir_sums(const float* __restrict g, const float* __restrict m,
                       const float* __restrict v, int64_t n, const AdamConsts& k, AdamSums& out) {
  float dd = 0.f, gm = 0.f, mm = 0.f, gg = 0.f;
#pragma omp simd reduction(+ : dd, gm, mm, gg)
  for (int64_t j = 0; j < n; ++j) {
    const float m0 = m[j];
    const float gj = g[j];
    const float mj = k.b1 * m0 + k.omb1 * gj;
    const float vj = k.b2 * v[j] + k.omb2 * gj * gj;
    const float d = (mj * k.inv_bc1) / (std::sqrt(vj) * k.inv_sqrt_bc2 + k.eps);
    dd += d * d;
    gm += gj * m0;
    mm += m0 * m0;
    gg += gj * gj;
  }
  out.dd += dd;
  out.gm += gm;
  out.mm += mm;
  out.gg += gg;
  out.count += n;
}

// Adam's sums over the elements [begin, end) of one tensor: all of them, or on a sampled
// tensor only the pages with index % kSampleEvery == offset.
AdamSums adam_chunk_sums(const float* g, const float* m, const float* v, int64_t begin, int64_t end,
                         bool sampled, int64_t offset, const AdamConsts& k) {
  AdamSums out;
  if (!sampled) {
    add_adam_dir_sums(g + begin, m + begin, v + begin, end - begin, k, out);
    return out;
  }
  for (int64_t page = begin / kPage; page * kPage < end; ++page) {
    if (page % kSampleEvery != offset) continue;
    const int64_t lo = std::max(begin, page * kPage), hi = std::min(end, (page + 1) * kPage);
    add_adam_dir_sums(g + lo, m + lo, v + lo, hi - lo, k, out);
  }
  return out;
}

float adam_commit(float* __restrict p, const float* __restrict g, float* __restrict m,
                  float* __restrict v, int64_t n, const AdamConsts& k, float keep,
                  float c_sgd, float c_adam) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) {
    const float gj = g[j];
    const float mj = k.b1 * m[j] + k.omb1 * gj;
    const float vj = k.b2 * v[j] + k.omb2 * gj * gj;
    m[j] = mj;
    v[j] = vj;
    const float d = (mj * k.inv_bc1) / (std::sqrt(vj) * k.inv_sqrt_bc2 + k.eps);
    const float pj = keep * p[j] + c_sgd * gj + c_adam * d;
    p[j] = pj;
    acc += pj * pj;
  }
  return acc;
}

float sgd_commit(float* __restrict p, const float* __restrict g, int64_t n, float keep,
                 float c_sgd) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) {
    const float pj = keep * p[j] + c_sgd * g[j];
    p[j] = pj;
    acc += pj * pj;
  }
  return acc;
}

}  // namespace

// Returns float64 [n, 6]: sum(g^2) over every element, then over the summed elements (all, or
// the sampled pages) sum(d_adam^2), sum(g*m), sum(m^2), sum(g^2) and their count (the Adam
// columns 0 when has_adam is false; m is the momentum before this step).
at::Tensor probe(const std::vector<at::Tensor>& grads,
                 const std::vector<at::Tensor>& exp_avg,
                 const std::vector<at::Tensor>& exp_avg_sq,
                 int64_t sample_offset,
                 bool has_adam, double beta1, double beta2, double eps,
                 double bias_correction1, double bias_correction2) {
  check_list(grads, "grads");
  if (has_adam) {
    check_list(exp_avg, "exp_avg");
    check_list(exp_avg_sq, "exp_avg_sq");
  }
  TORCH_CHECK(sample_offset >= 0 && sample_offset < kSampleEvery, "fused L3RS: sample_offset out of range");
  constexpr int64_t kCols = 6;
  const auto chunks = make_chunks(grads);
  const int64_t n_chunks = static_cast<int64_t>(chunks.size());
  std::vector<double> partial(kCols * n_chunks, 0.0);
  const AdamConsts k = adam_consts(beta1, beta2, eps, bias_correction1, bias_correction2);
  std::vector<const float*> g_ptr, m_ptr, v_ptr;
  std::vector<bool> sampled;
  for (size_t i = 0; i < grads.size(); ++i) {
    g_ptr.push_back(grads[i].data_ptr<float>());
    m_ptr.push_back(has_adam ? exp_avg[i].data_ptr<float>() : nullptr);
    v_ptr.push_back(has_adam ? exp_avg_sq[i].data_ptr<float>() : nullptr);
    sampled.push_back(grads[i].numel() >= kSampleMinPages * kPage);
  }

  at::parallel_for(0, n_chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const Chunk& ch = chunks[c];
      const int64_t t = ch.tensor;
      double* out = &partial[kCols * c];
      out[0] = sum_sq(g_ptr[t] + ch.begin, ch.end - ch.begin);
      if (has_adam) {
        const AdamSums a =
            adam_chunk_sums(g_ptr[t], m_ptr[t], v_ptr[t], ch.begin, ch.end, sampled[t], sample_offset, k);
        out[1] = a.dd;
        out[2] = a.gm;
        out[3] = a.mm;
        out[4] = a.gg;
        out[5] = static_cast<double>(a.count);
      }
    }
  });

  auto out = at::zeros({static_cast<int64_t>(grads.size()), kCols}, at::kDouble);
  double* o = out.data_ptr<double>();
  for (int64_t c = 0; c < n_chunks; ++c) {
    for (int64_t q = 0; q < kCols; ++q) o[kCols * chunks[c].tensor + q] += partial[kCols * c + q];
  }
  return out;
}

// coef: float64 [n, 3] = (c_sgd, c_adam, c_p): p <- (1 + c_p)*p + c_sgd*g + c_adam*d_adam.
// skip: bool [n]; skipped tensors keep p, m, v untouched. Returns float64 [n]: sum(p^2).
at::Tensor commit(const std::vector<at::Tensor>& params,
                  const std::vector<at::Tensor>& grads,
                  const std::vector<at::Tensor>& exp_avg,
                  const std::vector<at::Tensor>& exp_avg_sq,
                  const at::Tensor& coef, const at::Tensor& skip,
                  bool has_adam, double beta1, double beta2, double eps,
                  double bias_correction1, double bias_correction2) {
  check_list(params, "params");
  check_list(grads, "grads");
  if (has_adam) {
    check_list(exp_avg, "exp_avg");
    check_list(exp_avg_sq, "exp_avg_sq");
  }
  auto coef_c = coef.to(at::kDouble).contiguous();
  auto skip_c = skip.to(at::kBool).contiguous();
  const double* cf = coef_c.data_ptr<double>();
  const bool* sk = skip_c.data_ptr<bool>();
  const auto chunks = make_chunks(params);
  const int64_t n_chunks = static_cast<int64_t>(chunks.size());
  std::vector<double> partial(n_chunks, 0.0);
  const AdamConsts k = adam_consts(beta1, beta2, eps, bias_correction1, bias_correction2);
  std::vector<float*> p_ptr, m_ptr, v_ptr;
  std::vector<const float*> g_ptr;
  for (size_t i = 0; i < params.size(); ++i) {
    p_ptr.push_back(params[i].data_ptr<float>());
    g_ptr.push_back(grads[i].data_ptr<float>());
    m_ptr.push_back(has_adam ? exp_avg[i].data_ptr<float>() : nullptr);
    v_ptr.push_back(has_adam ? exp_avg_sq[i].data_ptr<float>() : nullptr);
  }

  at::parallel_for(0, n_chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const Chunk& ch = chunks[c];
      const int64_t t = ch.tensor;
      const int64_t n = ch.end - ch.begin;
      float* p = p_ptr[t] + ch.begin;
      if (sk[t]) {
        partial[c] = sum_sq(p, n);
        continue;
      }
      const float c_sgd = static_cast<float>(cf[3 * t]);
      const float c_adam = static_cast<float>(cf[3 * t + 1]);
      const float keep = static_cast<float>(1.0 + cf[3 * t + 2]);
      if (has_adam) {
        partial[c] = adam_commit(p, g_ptr[t] + ch.begin, m_ptr[t] + ch.begin,
                                 v_ptr[t] + ch.begin, n, k, keep, c_sgd, c_adam);
      } else {
        partial[c] = sgd_commit(p, g_ptr[t] + ch.begin, n, keep, c_sgd);
      }
    }
  });

  auto out = at::zeros({static_cast<int64_t>(params.size())}, at::kDouble);
  double* o = out.data_ptr<double>();
  for (int64_t c = 0; c < n_chunks; ++c) o[chunks[c].tensor] += partial[c];
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("probe", &probe, "L3RS probe pass (norms, sampled Adam sums on large tensors, no writes)");
  m.def("sample_constants", []() { return std::vector<int64_t>{kPage, kSampleEvery, kSampleMinPages}; });
  m.def("commit", &commit, "L3RS commit pass (state and parameter update)");
}
