// clip-kit-runner: load a .ptl with the mobile (lite) loader, the one a phone uses, and time it.
//
//   clip-kit-runner MODEL.ptl --input 1,3,224,224:float [--input 1,77:int64] [--iters 50] [--warmup 5]
//                   [--threads 2] [--loads 3] [--engine qnnpack|fbgemm] [--role image_encoder]
//
// Prints one clip-mobile-kit-bench v1 report (docs/formats.md) on stdout, the way PyTorch's
// speed_benchmark_torch prints its figures, so `python -m deploy bench --from-json` renders it.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/csrc/jit/mobile/import.h>
#include <torch/csrc/jit/mobile/module.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>
#if defined(__GLIBC__)
#include <malloc.h>  // mallopt
#endif

namespace {

struct InputSpec {
  std::vector<int64_t> shape;
  std::string dtype;  // float | int64
};

[[noreturn]] void die(const std::string& msg) {
  std::cerr << "error: " << msg << "\n";
  std::exit(2);
}

InputSpec parse_input(const std::string& text) {
  InputSpec spec;
  auto colon = text.find(':');
  std::string dims = text.substr(0, colon);
  spec.dtype = colon == std::string::npos ? "float" : text.substr(colon + 1);
  if (spec.dtype == "float32") spec.dtype = "float";
  if (spec.dtype == "long") spec.dtype = "int64";
  if (spec.dtype != "float" && spec.dtype != "int64") die("--input dtype must be float or int64: " + text);
  std::stringstream ss(dims);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      int64_t d = std::stoll(item);
      if (d < 1) throw std::invalid_argument("dim");
      spec.shape.push_back(d);
    } catch (const std::exception&) {
      die("--input shape must be positive integers separated by commas: " + text);
    }
  }
  if (spec.shape.empty()) die("--input has no shape: " + text);
  return spec;
}

at::Tensor make_input(const InputSpec& spec) {
  if (spec.dtype == "int64") {
    // A CLIP-like token row: start-of-text, a word, end-of-text, padding (any ids time the same).
    at::Tensor t = at::zeros(spec.shape, at::kLong);
    auto flat = t.view({-1, spec.shape.back()});
    int64_t ids[] = {49406, 320, 49407};
    for (int64_t r = 0; r < flat.size(0); ++r)
      for (int64_t i = 0; i < std::min<int64_t>(3, flat.size(1)); ++i) flat[r][i] = ids[i];
    return t;
  }
  at::manual_seed(0);
  return at::randn(spec.shape);
}

long proc_status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::string(key).size());
  return -1;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double pct(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  if (v.size() == 1) return v[0];
  double pos = (v.size() - 1) * q / 100.0;
  size_t lo = static_cast<size_t>(pos), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

std::string stats(const std::vector<double>& v) {
  std::ostringstream o;
  o.precision(6);
  o << "{\"median\": " << pct(v, 50) << ", \"p90\": " << pct(v, 90) << ", \"samples\": [";
  for (size_t i = 0; i < v.size(); ++i) o << (i ? ", " : "") << v[i];
  o << "]}";
  return o.str();
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string basename(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, engine, role;
  std::vector<InputSpec> inputs;
  int iters = 50, warmup = 5, threads = 0, loads = 3;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    auto next_int = [&](int min) {
      std::string v = next();
      try {
        int n = std::stoi(v);
        if (n < min) throw std::invalid_argument("small");
        return n;
      } catch (const std::exception&) {
        die(a + " must be an integer >= " + std::to_string(min) + ", got " + v);
      }
    };
    if (a == "--input") inputs.push_back(parse_input(next()));
    else if (a == "--iters") iters = next_int(1);
    else if (a == "--warmup") warmup = next_int(0);
    else if (a == "--threads") threads = next_int(0);
    else if (a == "--loads") loads = next_int(1);
    else if (a == "--engine") engine = next();
    else if (a == "--role") role = next();
    else if (a == "-h" || a == "--help") {
      std::cout << "usage: clip-kit-runner MODEL.ptl --input 1,3,224,224:float [--input 1,77:int64] "
                   "[--iters 50] [--warmup 5] [--threads N] [--loads 3] [--engine qnnpack|fbgemm] [--role NAME]\n";
      return 0;
    } else if (!a.empty() && a[0] == '-') die("unknown option " + a);
    else if (model.empty()) model = a;
    else die("more than one model given");
  }
  if (model.empty()) die("no model given (clip-kit-runner MODEL.ptl --input SHAPE:DTYPE ...)");
  if (inputs.empty()) die("give at least one --input SHAPE:DTYPE, e.g. --input 1,3,224,224:float");
  if (!std::ifstream(model).good()) die("cannot open " + model);
  if (threads > 0) at::set_num_threads(threads);
  if (engine == "qnnpack") at::globalContext().setQEngine(at::QEngine::QNNPACK);
  else if (engine == "fbgemm") at::globalContext().setQEngine(at::QEngine::FBGEMM);
  else if (!engine.empty()) die("--engine must be qnnpack or fbgemm");

  std::vector<c10::IValue> args;
  for (const auto& s : inputs) args.emplace_back(make_input(s));
  long baseline_kb = proc_status_kb("VmRSS:");

  std::vector<double> load_ms;
  std::unique_ptr<torch::jit::mobile::Module> module;
  // As deploy/heap.py (the reasons are there): weights mapped on their own during the load and the first
  // call (packing), so the unpacked ones go back to the system; activations on the heap after that.
  const char* heap_env = std::getenv("CLIPKIT_HEAP_PHASE");
  const bool heap_phase = !(heap_env && std::string(heap_env) == "0");
#if defined(__GLIBC__)
  if (heap_phase) mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
  try {
    for (int l = 0; l < loads; ++l) {
      module.reset();
      double t0 = now_ms();
      module = std::make_unique<torch::jit::mobile::Module>(torch::jit::_load_for_mobile(model));
      load_ms.push_back(now_ms() - t0);
    }
  } catch (const std::exception& e) {
    die("cannot load " + model + ": " + std::string(e.what()).substr(0, 400));
  }
  double first_ms = 0;
  std::vector<double> steady;
  try {
    double t0 = now_ms();
    module->forward(args);
    first_ms = now_ms() - t0;
#if defined(__GLIBC__)
    if (heap_phase) {
      mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
      mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    }
#endif
    for (int w = 0; w < warmup; ++w) module->forward(args);
    for (int it = 0; it < iters; ++it) {
      double s = now_ms();
      module->forward(args);
      steady.push_back(now_ms() - s);
    }
  } catch (const std::exception& e) {
    die("forward failed (check --input shapes/dtypes): " + std::string(e.what()).substr(0, 400));
  }
  long peak_kb = proc_status_kb("VmHWM:");
  std::ifstream f(model, std::ios::binary | std::ios::ate);
  long long size = static_cast<long long>(f.tellg());
  char utc[32];
  std::time_t t = std::time(nullptr);
  std::strftime(utc, sizeof utc, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  std::string eng = at::toString(at::globalContext().qEngine());
  for (auto& c : eng) c = static_cast<char>(std::tolower(c));
  const char* omp = std::getenv("OMP_WAIT_POLICY");
#if defined(__ANDROID__)
  const char* host = "android";
#elif defined(__aarch64__)
  const char* host = "aarch64";
#else
  const char* host = "x86_64";
#endif
  std::ostringstream o;
  o.precision(6);
  o << "{\"schema\": \"clip-mobile-kit-bench\", \"schema_version\": 1, \"created_utc\": " << quote(utc) << ",\n"
    << " \"environment\": {\"host\": " << quote(host) << ", \"device\": \"clip-kit-runner\", \"torch\": "
    << quote("libtorch (mobile loader)") << ", \"threads\": " << at::get_num_threads()
    << ", \"engine\": " << quote(eng) << ", \"omp_wait_policy\": " << (omp ? quote(omp) : "null")
    << ", \"cpu_flags\": []},\n"
    << " \"results\": [{\"role\": " << quote(role.empty() ? basename(model) : role)
    << ", \"variant\": \"lite\", \"file\": " << quote(basename(model)) << ", \"threads\": " << at::get_num_threads()
    << ", \"engine\": " << quote(eng) << ", \"size_bytes\": " << size << ",\n  \"load_ms\": " << stats(load_ms)
    << ",\n  \"first_ms\": " << first_ms << ",\n  \"steady_ms\": " << stats(steady)
    << ",\n  \"peak_rss_bytes\": " << peak_kb * 1024 << ", \"rss_baseline_bytes\": " << baseline_kb * 1024
    << ", \"peak_rss_above_baseline_bytes\": " << (peak_kb - baseline_kb) * 1024 << ", \"omp_wait_policy\": "
    << (omp ? quote(omp) : "null") << ", \"runner\": \"clip-kit-runner\"}]}\n";
  std::cout << o.str();
  return 0;
}
