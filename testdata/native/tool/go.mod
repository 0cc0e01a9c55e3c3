module nativetool

go 1.22
