from hutch import Container, Image
c = Container(image=Image.debian_slim(), cpu="2", memory="4Gi").run()
result = c.exec("python3", "-c", "print('hello from a sandbox')")
print(result.stdout_text)
c.stop()
