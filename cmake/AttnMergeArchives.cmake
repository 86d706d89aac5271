# Merges static archives into one, for libattnrt.a: run as
#   cmake -DOUTPUT=libattnrt.a -DAR=ar "-DINPUTS=a.a;b.a" -P AttnMergeArchives.cmake
# through ar's MRI scripts, which copy every member of every input.
file(REMOVE ${OUTPUT})
set(script "create ${OUTPUT}\n")
foreach(input IN LISTS INPUTS)
  string(APPEND script "addlib ${input}\n")
endforeach()
string(APPEND script "save\nend\n")
file(WRITE ${OUTPUT}.mri "${script}")
execute_process(COMMAND ${AR} -M INPUT_FILE ${OUTPUT}.mri RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "merging ${INPUTS} into ${OUTPUT} failed: ${result}")
endif()
file(REMOVE ${OUTPUT}.mri)
