// mtc-opt: the mt dialects and passes, with the upstream ones we use, for lit.
#include "dialects/mt/MtDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <string_view>
#include <vector>

namespace {

/// The short help: our passes (with their options) first, the upstream
/// passes we register, the flags lit uses, and where the full list is.
void printShortHelp() {
  llvm::raw_ostream &os = llvm::outs();
  os << "OVERVIEW: mtc-opt: the mt dialect and mtc's passes on MLIR files (lit tests, "
        "debugging)\n\n"
        "USAGE: mtc-opt [options] [input.mlir]   (stdin without a file; stdout unless -o)\n\n"
        "mt passes:\n";
  std::vector<const mlir::PassInfo *> passes;
  for (const auto &pass :
       {mt::createPartitionTensorParallel(), mt::createPartitionContextParallel(),
        mt::createPartitionExpertParallel(),
        mt::createAutodiff(), mt::createBuildOptimizer(), mt::createExposeCollectives(),
        mt::createRecompute(), mt::createPipelineSplit()})
    passes.push_back(mlir::PassInfo::lookup(pass->getArgument()));
  // The description column, as mlir-opt's own help computes it.
  size_t width = 0;
  for (const mlir::PassInfo *info : passes)
    width = std::max(width, info->getOptionWidth() + 4);
  for (const mlir::PassInfo *info : passes)
    info->printHelpStr(/*indent=*/2, width);
  os << "\nupstream passes: --canonicalize, --cse, --symbol-dce\n\n"
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
