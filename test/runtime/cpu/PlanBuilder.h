// Small plans written by hand for tests that run the CPU executor on a few
// instructions: buffers laid out 64-byte aligned in their arenas, and
// instructions with typed attributes.
#ifndef MT_TEST_RUNTIME_CPU_PLANBUILDER_H
#define MT_TEST_RUNTIME_CPU_PLANBUILDER_H

#include "runtime/plan/PlanVersion.h"
#include "runtime/plan/plan.pb.h"

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace mt::test {

class PlanBuilder {
public:
  using Value = std::variant<int64_t, double, std::string>;

  PlanBuilder() { plan_.set_version(plan::kPlanVersion); }

  /// A buffer of `shape` in `arena`; returns its id.
  uint32_t buffer(const std::string &name, plan::ArenaKind arena, std::vector<int64_t> shape,
                  plan::DType dtype = plan::F32) {
    plan::Buffer *b = plan_.add_buffers();
    b->set_id(uint32_t(plan_.buffers_size() - 1));
    b->set_name(name);
    b->set_dtype(dtype);
    int64_t n = 1;
    for (int64_t d : shape) {
      b->add_shape(d);
      n *= d;
    }
    const uint64_t bytes = uint64_t(n) * (dtype == plan::I64 ? 8 : dtype == plan::BF16 ? 2 : 4);
    b->set_arena(arena);
    b->set_offset_bytes(arenaBytes_[arena]);
    b->set_size_bytes(bytes);
    arenaBytes_[arena] += (bytes + 63) / 64 * 64;
    return b->id();
  }

  /// Appends an instruction to `program` (created on first use).
  plan::Instruction &instruction(const std::string &program, const std::string &op,
                                 std::vector<uint32_t> inputs, std::vector<uint32_t> outputs,
                                 const std::map<std::string, Value> &attrs = {}) {
    plan::Instruction *in = programNamed(program).add_instructions();
    in->set_op(op);
    for (uint32_t id : inputs)
      in->add_inputs(id);
    for (uint32_t id : outputs)
      in->add_outputs(id);
    for (const auto &[name, value] : attrs) {
      plan::Attribute *a = in->add_attributes();
      a->set_name(name);
      if (auto *i = std::get_if<int64_t>(&value))
        a->set_i(*i);
      else if (auto *f = std::get_if<double>(&value))
        a->set_f(*f);
      else
        a->set_s(std::get<std::string>(value));
    }
    return *in;
  }

  /// The plan, with the arenas sized to hold every buffer.
  plan::Plan build() const {
    plan::Plan p = plan_;
    for (const auto &[kind, bytes] : arenaBytes_) {
      plan::Arena *a = p.add_arenas();
      a->set_kind(kind);
      a->set_size_bytes(bytes);
    }
    return p;
  }

private:
  plan::Program &programNamed(const std::string &name) {
    for (plan::Program &p : *plan_.mutable_programs())
      if (p.name() == name)
        return p;
    plan::Program *p = plan_.add_programs();
    p->set_name(name);
    p->set_virtual_stage(-1);
    return *p;
  }

  plan::Plan plan_;
  std::map<plan::ArenaKind, uint64_t> arenaBytes_;
};

} // namespace mt::test

#endif // MT_TEST_RUNTIME_CPU_PLANBUILDER_H
