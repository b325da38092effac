// mtc-opt: the mt dialects and passes, with the upstream ones we use, for lit.
#include "dialects/mt/MtDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <string_view>
#include <vector>

namespace {

/// The registered passes, read back from the command line the registry
/// makes of them (one option name per pass): mtc's (the `mt-` flags) and
/// the upstream ones, each sorted by flag.
struct RegisteredPasses {
  std::vector<const mlir::PassInfo *> mt, upstream;
};

RegisteredPasses registeredPasses() {
  // Registers one cl option name per registered pass, as MlirOptMain does.
  static mlir::PassPipelineCLParser parser("", "the passes to run");
  RegisteredPasses passes;
  for (const auto &entry : llvm::cl::getRegisteredOptions())
    if (const mlir::PassInfo *info = mlir::PassInfo::lookup(entry.first))
      (info->getPassArgument().starts_with("mt-") ? passes.mt : passes.upstream)
          .push_back(info);
  for (auto *list : {&passes.mt, &passes.upstream})
    llvm::sort(*list, [](const mlir::PassInfo *a, const mlir::PassInfo *b) {
      return a->getPassArgument() < b->getPassArgument();
    });
  return passes;
}

/// The short help: our passes (with their options) first, the upstream
/// passes we register, the flags lit uses, and where the full list is.
void printShortHelp() {
  llvm::raw_ostream &os = llvm::outs();
  os << "OVERVIEW: mtc-opt: the mt dialect and mtc's passes on MLIR files (lit tests, "
        "debugging)\n\n"
        "USAGE: mtc-opt [options] [input.mlir]   (stdin without a file; stdout unless -o)\n\n"
        "mt passes:\n";
  const RegisteredPasses passes = registeredPasses();
  // The description column, as mlir-opt's own help computes it.
  size_t width = 0;
  for (const mlir::PassInfo *info : passes.mt)
    width = std::max(width, info->getOptionWidth() + 4);
  for (const mlir::PassInfo *info : passes.mt)
    info->printHelpStr(/*indent=*/2, width);
  os << "\nupstream passes:";
  for (auto [i, info] : llvm::enumerate(passes.upstream))
    os << (i ? ", --" : " --") << info->getPassArgument();
  os << "\n\n"
        "common options:\n"
        "  -o <file>                 write the result here\n"
        "  --pass-pipeline=<text>    e.g. 'builtin.module(mt-partition-tp{sequence-parallel})'\n"
        "  --split-input-file        process each '// -----' chunk on its own\n"
        "  --verify-diagnostics      check expected-error/-note comments\n"
        "  --mlir-print-ir-after-all print the IR after every pass\n"
        "  --version                 print the version and exit\n"
        "  --help-list               every LLVM and MLIR option and pass\n";
}

} // namespace

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<mt::MtDialect, mlir::func::FuncDialect, mlir::shard::ShardDialect>();
  mt::registerMtPasses();
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  mlir::registerSymbolDCEPass();
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-help" || arg == "-h") {
      printShortHelp();
      return 0;
    }
    if (arg == "--version" || arg == "-version") {
      llvm::outs() << "mtc-opt " MT_VERSION " (MLIR " LLVM_VERSION_STRING ")\n";
      return 0;
    }
  }
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "mtc-opt: mt dialects and passes\n", registry));
}
