#!/nativetool script
# a script: the kernel runs "/nativetool script /script.sh ARGS"
