module nativelogger

go 1.22
