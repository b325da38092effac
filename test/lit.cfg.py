# lit configuration of mtc: every .mlir and .test file under test/.
import os
import lit.formats

config.name = "mtc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "Inputs", "lit.cfg.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = getattr(config, "mt_obj_root", config.test_source_root)
for tools in (config.mt_tools_dir, config.llvm_tools_dir):
    config.environment["PATH"] = tools + os.pathsep + config.environment.get("PATH", os.environ["PATH"])
config.substitutions.append(("%models", os.path.join(config.mt_source_dir, "models")))
# The npm test references (tools/npm-references.sh), installed by the ctest
# fixture text/references into the build directory.
config.substitutions.append(("%npm", os.path.join(os.path.dirname(config.mt_tools_dir), "npm")))
